/**
 * The envelope of every JSON document qvm prints with `-o json`: `{"apiVersion": "qvm/v1", "kind": ..., ...}`,
 * as Kubernetes objects are. A field may be added within a version; removing one or changing what it means
 * makes a new version.
 */
export const API_VERSION = 'qvm/v1';

export type ApiKind = 'Plan' | 'StatusList' | 'ImageList' | 'SnapshotList';

/** A JSON document of this kind: apiVersion and kind first, then the body's fields. */
export function apiDocument<T extends object>(
  kind: ApiKind,
  body: T,
): { apiVersion: typeof API_VERSION; kind: ApiKind } & T {
  return { apiVersion: API_VERSION, kind, ...body };
}
