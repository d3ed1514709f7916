/**
 * Node built-in modules that most runs of a one-shot command never use, loaded on first use. A static
 * import loads a built-in when the bundle starts, whether the command needs it or not, and these are not
 * in Node's start-up snapshot: node:crypto costs 1-2 ms to load, node:child_process (which brings
 * node:net and streams along) 1-2 ms, against the 15-35 ms a hot command spends above Node's own start-up.
 */
export const crypto = () => process.getBuiltinModule('node:crypto');
/** Only UDP forwards need it (their host port is checked by binding it). */
export const dgram = () => process.getBuiltinModule('node:dgram');
export const childProcess = () => process.getBuiltinModule('node:child_process');
