/**
 * Names and tags as qvm accepts them, one pattern each: the schema's patterns are checked against these by a
 * unit test, so the schema, the validator and the runtime folders never disagree.
 */

/** A VM name: also a folder name under the runtime root and part of QEMU's -name. */
export const VM_NAME = /^[a-z][a-z0-9-]{0,39}$/;

/** A snapshot tag: travels inside one monitor command line (`savevm TAG`), so no spaces or quotes. */
export const SNAPSHOT_TAG = /^[A-Za-z0-9._-]{1,64}$/;

/** The snapshot tag qvm owns for hibernation (state: saved). */
export const SAVED_STATE_TAG = 'qvm-saved-state';
