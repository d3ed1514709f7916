/**
 * `qvm export`: the manifest's VMs as another engine's own files (a Nomad job per VM, KubeVirt documents per VM).
 * What an engine cannot express is not dropped silently: every approximation or loss is an ExportWarning, data
 * that the CLI renders (and `--strict` turns into a failure).
 */

export type ExportTarget = 'nomad' | 'kubevirt';

/** One approximation or loss: which VM, which manifest field, and what the target does instead. */
export interface ExportWarning {
  vm: string;
  /** The field of the VM, as the manifest writes it: `memory`, `forwards[0].address`, `disk.size`. */
  field: string;
  message: string;
}

/** How the guest reaches KubeVirt's pod network. */
export type KubevirtNetwork = 'masquerade' | 'slirp';

/** Where the files an engine fetches come from, and what the export cannot learn from the manifest. */
export interface ExportOptions {
  /**
   * Base URL that serves the VMs' local files (disks, kernels, initrds, ISOs) as BASE/VM/FILE: Nomad artifacts
   * and KubeVirt http import sources. Without it, local files are named by their path on this machine (Nomad)
   * or wait for an upload (KubeVirt), with a warning.
   */
  artifactBase?: string;
  /** Registry (and path) for the container images KubeVirt needs (kernel boot, ISOs): REGISTRY/VM-boot:latest. */
  registry?: string;
  /** KubeVirt interface binding: masquerade (core, DHCP guests) or the slirp binding plugin (qvm's addresses). */
  network?: KubevirtNetwork;
  /** Public keys (authorized_keys lines) to authorize for a VM's `ssh:` user. */
  sshKeys?: string[];
  /**
   * The manifest's folder: warnings show local paths relative to it, as the manifest writes them, so they do not
   * depend on where the repository is checked out.
   */
  relativeTo?: string;
}

/** One file of the export: a VM's job or documents, named so that exporting again overwrites it. */
export interface ExportedFile {
  vm: string;
  /** The file name inside the output folder, e.g. `demo.nomad.json`. */
  name: string;
  text: string;
  /** The documents of the file, as written (for tests and for callers that want objects). */
  documents: Record<string, unknown>[];
}

export interface ExportResult {
  files: ExportedFile[];
  /** Every warning, in VM order, then in the order the fields were mapped. */
  warnings: ExportWarning[];
}
