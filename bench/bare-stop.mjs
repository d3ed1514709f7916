#!/usr/bin/env node
// The floor for a graceful stop by a Node CLI: a bare script (node:net only) that does just the QMP exchange
// of one, for each socket it is given, all at once. Connect, negotiate capabilities, press the power button
// (`system_powerdown`), wait for the guest's SHUTDOWN event, `quit` the QEMU (qvm starts it with
// -no-shutdown, as libvirt does), and exit once every QEMU has closed its socket. No manifest, no lock, no
// observation: bench/peer-libvirt.ts times it beside `virsh shutdown` and `qvm destroy`, to show how much of
// the difference is Node's own start-up.
//
// Usage: node bench/bare-stop.mjs SOCKET...
import net from 'node:net';

for (const socketPath of process.argv.slice(2)) stop(socketPath);

function stop(socketPath) {
  const socket = net.connect(socketPath);
  let buffer = '';
  let step = 0; // 0: greeting, 1: capabilities, 2: powerdown accepted, 3: SHUTDOWN seen, quit sent
  const fail = (message, code) => {
    process.stderr.write(`${socketPath}: ${message}\n`);
    process.exitCode = code;
    socket.destroy();
  };
  socket.setEncoding('utf8');
  socket.on('data', (chunk) => {
    buffer += chunk;
    for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
      const message = JSON.parse(buffer.slice(0, newline));
      buffer = buffer.slice(newline + 1);
      if (message.error) return fail(message.error.desc, 1);
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
    if (step !== 3 && !process.exitCode) fail('QEMU closed the socket before the guest powered off', 1);
  });
  socket.on('error', (error) => {
    if (step === 3) return; // QEMU quitting may reset the connection instead of closing it
    fail(error.message, 2);
  });
}
