/**
 * What a VM's extra devices need: the guest agent for `ready: {agent}` and for snapshots of a VM with shared
 * folders (QEMU refuses `savevm` while a 9p share is mounted), qcow2 data disks for snapshots, one serial and
 * one mount point each, and none of it on an adopted VM (qvm does not choose its devices).
 */
import type { Diagnostic } from '../../errors.js';
import { defaultSerial } from '../defaults.js';
import type { VmCheck } from '../document.js';

export const checkDevices: VmCheck = (doc) => {
  const { raw } = doc;
  const out: Diagnostic[] = [];
  const saves = raw.snapshot !== undefined || raw.state === 'saved';
  const savesField = raw.snapshot !== undefined ? 'snapshot' : 'state';
  if (raw.ready?.agent !== undefined && doc.accepted('ready') && raw.agent !== true)
    out.push(doc.problem(['ready', 'agent'], 'needs `agent: true`: the probe asks the guest agent'));
  if (raw.monitor !== undefined) {
    for (const field of ['agent', 'mounts', 'disks', 'display'] as const) {
      if (raw[field] !== undefined && doc.accepted(field))
        out.push(
          doc.problem([field], "cannot be used with `monitor`: qvm does not choose an adopted VM's devices"),
        );
    }
    return out;
  }
  const mounts = doc.accepted('mounts') && Array.isArray(raw.mounts) ? raw.mounts : [];
  if (mounts.length > 0 && saves && raw.agent !== true && doc.accepted(savesField)) {
    out.push(
      doc.problem(
        [savesField],
        `${savesField === 'state' ? 'saved ' : ''}with \`mounts\` needs \`agent: true\`: QEMU refuses to save a VM while a 9p share is mounted in the guest; with the agent qvm unmounts the shares before saving and mounts them again after a resume`,
      ),
    );
  }
  const guests = new Map<string, number>();
  mounts.forEach((m, i) => {
    const first = guests.get(m.guest);
    if (first !== undefined)
      out.push(doc.problem(['mounts', i, 'guest'], `is also where mounts[${first}] is mounted`));
    else guests.set(m.guest, i);
  });
  const disks = doc.accepted('disks') && Array.isArray(raw.disks) ? raw.disks : [];
  const serials = new Map<string, number>();
  disks.forEach((d, i) => {
    const serial = d.serial ?? defaultSerial(d.path);
    const first = serials.get(serial);
    if (first !== undefined)
      out.push(
        doc.problem(
          ['disks', i],
          `has the serial ${JSON.stringify(serial)} of disks[${first}]; give one of them \`serial:\` so the guest can tell them apart`,
        ),
      );
    else serials.set(serial, i);
    if (saves && d.format === 'raw' && doc.accepted(savesField))
      out.push(
        doc.problem(
          ['disks', i, 'format'],
          `must be qcow2 with \`${savesField}\`: QEMU saves a snapshot into every writable disk, and a raw disk cannot hold one`,
        ),
      );
  });
  return out;
};
