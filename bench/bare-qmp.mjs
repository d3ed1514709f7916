#!/usr/bin/env node
// The floor for `qvm monitor --socket`: a bare Node script (node:net only, nothing to load or resolve) doing
// the same exchange over QMP. Connect, read the greeting, negotiate capabilities, send one HMP command line
// through `human-monitor-command`, print its output, exit. bench/monitor.ts times it against qvm.
//
// Usage: node bench/bare-qmp.mjs SOCKET COMMAND...
import net from 'node:net';

const [socketPath, ...words] = process.argv.slice(2);
const socket = net.connect(socketPath);
let buffer = '';
let step = 0; // 0: greeting, 1: capabilities, 2: the command
socket.setEncoding('utf8');
socket.on('data', (chunk) => {
  buffer += chunk;
  for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
    const message = JSON.parse(buffer.slice(0, newline));
    buffer = buffer.slice(newline + 1);
    if (message.event) continue;
    if (message.error) {
      process.stderr.write(`${message.error.desc}\n`);
      process.exitCode = 1;
      socket.destroy();
      return;
    }
    if (step === 0) socket.write('{"execute":"qmp_capabilities"}\n');
    else if (step === 1)
      socket.write(
        `${JSON.stringify({ execute: 'human-monitor-command', arguments: { 'command-line': words.join(' ') } })}\n`,
      );
    else {
      process.stdout.write(message.return);
      socket.destroy();
      return;
    }
    step++;
  }
});
socket.on('error', (error) => {
  process.stderr.write(`${error.message}\n`);
  process.exitCode = 2;
});
