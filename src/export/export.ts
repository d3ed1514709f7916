/**
 * `qvm export`: the manifest's VMs as files of another engine, with every approximation reported. Pure: the
 * same manifest and options give byte-identical files (no clock, no host state; struct fields in a fixed order,
 * free-form maps sorted).
 */

import { stringify } from 'yaml';
import { type Diagnostic, ManifestError } from '../errors.js';
import type { Manifest, VmSpec } from '../manifest/types.js';
import { formatFieldPath } from '../model/field-path.js';
import { kubernetesName, kubevirtDocuments } from './kubevirt.js';
import { nomadJob } from './nomad.js';
import type { ExportedFile, ExportOptions, ExportResult, ExportTarget, ExportWarning } from './types.js';

/**
 * Adopted VMs (`monitor:`) run a QEMU that someone else started: no engine can take it over, so exporting one
 * is a located error, like any other manifest error.
 */
function refuseAdopted(manifest: Manifest, vms: VmSpec[], target: ExportTarget): void {
  const diagnostics: Diagnostic[] = vms
    .filter((v) => v.monitor !== undefined)
    .map((v) => {
      const fieldPath = ['vms', v.name, 'monitor'];
      return {
        file: v.source,
        ...manifest.locate(fieldPath),
        path: formatFieldPath(fieldPath),
        message: `is an adopted VM (a QEMU started outside qvm): ${target === 'nomad' ? 'Nomad' : 'KubeVirt'} starts its own QEMU, so it cannot be exported; name the other VMs to export them`,
      };
    });
  if (diagnostics.length) throw new ManifestError(manifest.file, diagnostics);
}

/** The files for VMS of the manifest (every VM when empty), in manifest order. Throws ManifestError for adopted VMs. */
export function exportManifest(
  manifest: Manifest,
  target: ExportTarget,
  vms: VmSpec[],
  options: ExportOptions,
): ExportResult {
  refuseAdopted(manifest, vms, target);
  const shown: ExportOptions = { relativeTo: manifest.dir, ...options };
  const files: ExportedFile[] = [];
  const warnings: ExportWarning[] = [];
  const taken = new Set(manifest.vms.map((v) => v.name));
  for (const spec of vms) {
    if (target === 'nomad') {
      const { job, warnings: own } = nomadJob(spec, shown);
      files.push({ vm: spec.name, name: `${spec.name}.nomad.json`, text: renderJson(job), documents: [job] });
      warnings.push(...own);
    } else {
      const name = kubernetesName(spec.name, taken);
      taken.add(name);
      const { documents, warnings: own } = kubevirtDocuments(spec, shown, name);
      files.push({
        vm: spec.name,
        name: `${spec.name}.kubevirt.yaml`,
        text: renderYaml(spec, documents, own),
        documents,
      });
      warnings.push(...own);
    }
  }
  return { files, warnings };
}

/** A Nomad job file: what `nomad job run -json FILE` reads. */
function renderJson(job: Record<string, unknown>): string {
  return `${JSON.stringify(job, null, 2)}\n`;
}

/**
 * A multi-document YAML stream that `kubectl apply -f` reads, with the warnings as comments on top, so a
 * reviewer of a GitOps change sees what did not carry over.
 */
function renderYaml(spec: VmSpec, documents: Record<string, unknown>[], warnings: ExportWarning[]): string {
  const header = [
    `# qvm export --to kubevirt: VM ${spec.name} of ${spec.source}`,
    ...(warnings.length ? ['# What does not carry over exactly:'] : []),
    ...warnings.map((w) => `#  - ${w.field}: ${w.message}`.replace(/\n/g, ' ')),
  ];
  const body = documents
    .map((doc) => stringify(doc, { lineWidth: 0, minContentWidth: 0, aliasDuplicateObjects: false }))
    .join('---\n');
  return `${header.join('\n')}\n${body}`;
}
