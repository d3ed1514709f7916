/** How qvm logs in to a VM over SSH: where, as whom, with which key, checking which host key. */
export interface SshAccess {
  vm: string;
  host: string;
  port: number;
  user: string;
  /** The private key file of the manifest's user key. */
  identity: string;
  /** A known_hosts file holding only this VM's host key, under `hostKeyAlias`. */
  knownHosts: string;
  hostKeyAlias: string;
}
