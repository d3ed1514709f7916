#!/usr/bin/env node
// The floor for a graceful stop by a Node CLI: a bare script (node:net only) that does just the QMP exchange
// of one. Connect, negotiate capabilities, press the power button (`system_powerdown`), wait for the guest's
// SHUTDOWN event, `quit` the QEMU (qvm starts it with -no-shutdown, as libvirt does), and exit once QEMU has
// closed the socket. No manifest, no lock, no observation: bench/peer-libvirt.ts times it beside
// `virsh shutdown` and `qvm destroy`, to show how much of the difference is Node's own start-up.
//
// Usage: node bench/bare-stop.mjs SOCKET
import net from 'node:net';

const socket = net.connect(process.argv[2]);
let buffer = '';
let step = 0; // 0: greeting, 1: capabilities, 2: powerdown accepted, 3: SHUTDOWN seen, quit sent
socket.setEncoding('utf8');
socket.on('data', (chunk) => {
  buffer += chunk;
  for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
    const message = JSON.parse(buffer.slice(0, newline));
    buffer = buffer.slice(newline + 1);
    if (message.error) {
      process.stderr.write(`${message.error.desc}\n`);
      process.exitCode = 1;
      socket.destroy();
      return;
    }
    if (step === 0) {
      socket.write('{"execute":"qmp_capabilities"}\n');
      step = 1;
    } else if (step === 1 && 'return' in message) {
      socket.write('{"execute":"system_powerdown"}\n');
      step = 2;
    } else if (step === 2 && message.event === 'SHUTDOWN') {
      socket.write('{"execute":"quit"}\n');
      step = 3;
    }
  }
});
// QEMU closes the monitor as it exits: that is the end (the caller waits for the process itself).
socket.on('close', () => {
  if (step !== 3 && !process.exitCode) {
    process.stderr.write('QEMU closed the socket before the guest powered off\n');
    process.exitCode = 1;
  }
});
socket.on('error', (error) => {
  if (step === 3) return; // QEMU quitting may reset the connection instead of closing it
  process.stderr.write(`${error.message}\n`);
  process.exitCode = 2;
});
