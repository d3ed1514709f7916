/**
 * The worked examples of the scale-out notes, reproduced field for field from examples/demo.yaml. Where the
 * export differs on purpose, the test makes the one documented change to the expected document and says why.
 */

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { exportManifest } from '../../src/export/export.js';
import type { ExportOptions, ExportTarget } from '../../src/export/types.js';
import { loadManifest } from '../../src/manifest/manifest.js';
import { manifestFrom, parseExported, scaleOutFixture } from '../helpers/scale-out.js';

const OPTIONS: ExportOptions = {
  artifactBase: 'https://artifacts.example.com/qvm',
  registry: 'registry.example.com/qvm',
};

/** The demo exported as the notes did: `qvm export -f examples/demo.yaml` from the repository's root. */
async function demoExport(target: ExportTarget, options: ExportOptions) {
  const manifest = await loadManifest('examples/demo.yaml');
  return exportManifest(manifest, target, manifest.vms, options);
}

// biome-ignore lint/suspicious/noExplicitAny: the expected documents are edited by path, as JSON
type Doc = Record<string, any>;

describe('the worked examples', () => {
  it('start from the same manifest as examples/demo.yaml', () => {
    expect(scaleOutFixture('demo.qvm.yaml')).toBe(readFileSync('examples/demo.yaml', 'utf8'));
  });

  it('demo.nomad.json: the same job, without the warnings in Meta', async () => {
    const { files } = await demoExport('nomad', OPTIONS);
    expect(files.map((f) => f.name)).toEqual(['demo.nomad.json']);
    const expected = JSON.parse(scaleOutFixture('demo.nomad.json')) as Doc;
    // Job meta reaches every task's environment, so Nomad treats a change to it as a destructive update: a
    // reworded warning would restart the VM with a fresh disk. The warnings go to stderr instead.
    delete expected.Job.Meta['qvm.warnings'];
    expect(JSON.parse(files[0]!.text)).toEqual(expected);
  });

  it('demo.kubevirt.yaml: the same VirtualMachine and Service with --network slirp', async () => {
    const { files } = await demoExport('kubevirt', { ...OPTIONS, network: 'slirp' });
    expect(files.map((f) => f.name)).toEqual(['demo.kubevirt.yaml']);
    expect(parseExported(files[0]!.name, files[0]!.text)).toEqual(
      parseExported('demo.kubevirt.yaml', scaleOutFixture('demo.kubevirt.yaml')),
    );
  });

  it('demo.kubevirt-masquerade.yaml: the same with masquerade and cloudInit.networkConfig', async () => {
    const demo = readFileSync('examples/demo.yaml', 'utf8');
    const withNetwork = `${demo}    cloudInit:\n      networkConfig: |\n        version: 2\n        ethernets:\n          eth0:\n            dhcp4: true\n`;
    const manifest = manifestFrom(withNetwork, `${process.cwd()}/examples`, 'examples/demo.yaml');
    const { files } = exportManifest(manifest, 'kubevirt', manifest.vms, OPTIONS);
    const expected = parseExported('m.yaml', scaleOutFixture('demo.kubevirt-masquerade.yaml')) as Doc[];
    for (const doc of expected) {
      // The variant was written shorter; the export labels and annotates every document the same way.
      doc.metadata.labels = { 'app.kubernetes.io/managed-by': 'qvm', ...doc.metadata.labels };
    }
    expected[0]!.metadata.annotations = { 'qvm/source': 'examples/demo.yaml' };
    expected[1]!.metadata.annotations = {
      'qvm/forward':
        'tcp 127.0.0.1:8080 -> guest :80 (qvm binds loopback only; ClusterIP is cluster-internal)',
    };
    const spec = expected[0]!.spec.template.spec;
    spec.domain.firmware.kernelBoot.container.imagePullPolicy = 'IfNotPresent';
    // qvm's seed always has user data (NoCloud reads a user-data file): with no userData, the empty
    // #cloud-config of qvm's own seed (guest/cloud-init.ts).
    spec.volumes[1].cloudInitNoCloud = {
      userData: '#cloud-config\n{}\n',
      ...spec.volumes[1].cloudInitNoCloud,
    };
    expect(parseExported(files[0]!.name, files[0]!.text)).toEqual(expected);
  });

  it('writes the warnings the notes list at the top of demo.kubevirt.yaml', async () => {
    const { files } = await demoExport('kubevirt', { ...OPTIONS, network: 'slirp' });
    expect(files[0]!.text.split('\napiVersion:')[0]).toBe(
      [
        '# qvm export --to kubevirt: VM demo of examples/demo.yaml',
        '# What does not carry over exactly:',
        '#  - kernel: ../guest/out/vmlinuz and ../guest/out/initrd.gz are files on this machine: bake them into a container image (FROM scratch, ADD --chown=107:107 vmlinuz initrd.gz /boot/) and push it as registry.example.com/qvm/demo-boot:latest',
        "#  - nic: the slirp network binding plugin gives the guest qvm's user network (10.0.2.15, gateway 10.0.2.2); an admin must register it in the KubeVirt CR (spec.configuration.network.binding.slirp.sidecarImage)",
        '#  - accel: auto becomes KVM: nodes without KVM are not used unless the KubeVirt CR sets developerConfiguration.useEmulation',
        "#  - restart: on-failure: KubeVirt starts the VM again with its own crash-loop back-off, not qvm's (1s doubling up to 5 min)",
        "#  - updates: a later change to this VirtualMachine is not applied by restarting it, as qvm apply does: CPU sockets, memory and hotpluggable volumes go live, anything else sets RestartRequired and waits for virtctl restart (forwards: a Service's ports change live, the interface's ports do not)",
        '#  - forwards[0]: tcp 127.0.0.1:8080 -> :80 is loopback-only in qvm; the ClusterIP Service demo is reachable from the whole cluster (the closest loopback-only equivalent is virtctl port-forward vm/demo 8080:80 on your machine)',
      ].join('\n'),
    );
  });
});
