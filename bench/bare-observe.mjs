#!/usr/bin/env node
// The floor for observing running VMs: a bare Node script (node:net only) that does over QMP what a no-op
// `qvm apply` asks every VM, all VMs at once. Connect, read the greeting, negotiate capabilities, then
// query-status, `info usernet` and query-block in one write, read the three replies, close. bench/scale.ts
// times it for 1 and for 100 VMs against qvm: what a 100th VM costs QEMU and the kernel, which no client
// can avoid, against what it costs qvm.
//
// Usage: node bench/bare-observe.mjs RUNTIME_ROOT   (every <namespace>/<vm>/qmp.sock there is under it)
import { existsSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const root = process.argv[2];
const sockets = readdirSync(root, { withFileTypes: true })
  .filter((e) => e.isDirectory() && /^[0-9a-f]{16}$/.test(e.name))
  .flatMap((ns) =>
    readdirSync(path.join(root, ns.name), { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((vm) => path.join(root, ns.name, vm.name, 'qmp.sock')),
  )
  .filter((socket) => existsSync(socket)); // a stopped VM's folder has no socket
const QUERIES = [
  { execute: 'query-status', id: 1 },
  { execute: 'human-monitor-command', arguments: { 'command-line': 'info usernet' }, id: 2 },
  { execute: 'query-block', id: 3 },
];

function observe(socketPath) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let buffer = '';
    let step = 'greeting';
    let replies = 0;
    socket.setEncoding('utf8');
    socket.setTimeout(5000, () => reject(new Error(`${socketPath}: no answer`)));
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      buffer += chunk;
      for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
        const message = JSON.parse(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
        if (message.event) continue;
        if (message.error) return reject(new Error(`${socketPath}: ${message.error.desc}`));
        if (step === 'greeting') {
          step = 'capabilities';
          socket.write('{"execute":"qmp_capabilities"}\n');
        } else if (step === 'capabilities') {
          step = 'queries';
          socket.write(QUERIES.map((q) => `${JSON.stringify(q)}\n`).join(''));
        } else if (++replies === QUERIES.length) {
          socket.destroy();
          resolve();
        }
      }
    });
  });
}

await Promise.all(sockets.map(observe));
console.log(`observed ${sockets.length} VMs`);
