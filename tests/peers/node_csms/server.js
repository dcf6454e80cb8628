// A CSMS on ocpp-rpc in strict mode: every message in both directions is validated against
// the official OCPP 1.6 JSON schemas; a charge point that sends an invalid request gets a
// CallError, and a wrong Basic-auth password gets HTTP 401.
//
// Driven by the tests: options on the command line, commands as JSON lines on stdin, and
// everything that happens reported as JSON lines on stdout.
//
//   node server.js [--port N] [--password TEXT | --password-hex HEX] [--boot Accepted:300,Pending:1,...]
//
// stdin commands:
//   {"cmd": "call", "id": 1, "method": "DataTransfer", "params": {...}}   -> {"event": "result"|"error", "id": 1, ...}
//   {"cmd": "raw", "data": "..."}                                         -> sends the text as it is
//   {"cmd": "close", "code": 1000}                                        -> closes the current charge point

'use strict';

const readline = require('readline');
const { RPCServer, createRPCError } = require('ocpp-rpc');

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : fallback;
}

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

const expected = option('--password-hex') !== undefined
  ? Buffer.from(option('--password-hex'), 'hex')
  : option('--password') !== undefined ? Buffer.from(option('--password'), 'utf8') : null;
const boots = option('--boot', 'Accepted:300').split(',').map((entry) => {
  const [status, interval] = entry.split(':');
  return { status, interval: Number(interval) };
});
let bootCount = 0;
let current = null;
// How transaction requests are answered (see tests/peers CsmsBehaviour).
const idTags = {};
const fail = {};
let nextTransactionId = 1000;
const started = new Map(); // a StartTransaction sent again unchanged is the same transaction

function transactionAnswer(method, params) {
  if ((fail[method] || 0) > 0) {
    fail[method] -= 1;
    throw createRPCError('InternalError', 'told to fail');
  }
  const info = idTags[params.idTag] || { status: 'Accepted' };
  if (method === 'Authorize') return { idTagInfo: info };
  if (method === 'StartTransaction') {
    const key = JSON.stringify(Object.keys(params).sort().map((k) => [k, params[k]]));
    if (!started.has(key)) {
      nextTransactionId += 1;
      started.set(key, nextTransactionId);
    }
    return { transactionId: started.get(key), idTagInfo: info };
  }
  if (method === 'StopTransaction') return params.idTag !== undefined ? { idTagInfo: info } : {};
  return {};
}

const server = new RPCServer({
  protocols: ['ocpp1.6'],
  strictMode: true,
  pingIntervalMs: 0,
  callTimeoutMs: 30000,
});

server.auth((accept, reject, handshake) => {
  if (expected !== null && !(handshake.password && handshake.password.equals(expected))) {
    emit({ event: 'auth_rejected', identity: handshake.identity, hadPassword: Boolean(handshake.password) });
    reject(401, 'wrong charge point id or password');
    return;
  }
  accept({});
});

server.on('client', (client) => {
  current = client;
  emit({ event: 'connect', identity: client.identity, protocol: client.protocol });

  client.on('message', ({ message, outbound }) => {
    emit({ event: 'frame', outbound, text: message.toString() });
  });
  client.on('strictValidationFailure', ({ error, method, outbound, isCall }) => {
    emit({ event: 'invalid', method, outbound, isCall, error: String(error && error.message) });
  });
  client.on('badMessage', ({ error }) => {
    emit({ event: 'bad_message', error: String(error && error.message) });
  });
  client.on('close', ({ code, reason }) => {
    emit({ event: 'close', identity: client.identity, code, reason: String(reason || '') });
    if (current === client) current = null;
  });

  const record = (method, params) => emit({ event: 'call', method, params });
  client.handle('BootNotification', ({ params }) => {
    record('BootNotification', params);
    const answer = boots[Math.min(bootCount, boots.length - 1)];
    bootCount += 1;
    return { status: answer.status, interval: answer.interval, currentTime: new Date().toISOString() };
  });
  client.handle('Heartbeat', ({ params }) => {
    record('Heartbeat', params);
    return { currentTime: new Date().toISOString() };
  });
  for (const method of ['StatusNotification', 'DiagnosticsStatusNotification', 'FirmwareStatusNotification']) {
    client.handle(method, ({ params }) => {
      record(method, params);
      return {};
    });
  }
  for (const method of ['Authorize', 'StartTransaction', 'StopTransaction', 'MeterValues']) {
    client.handle(method, ({ params }) => {
      record(method, params);
      return transactionAnswer(method, params);
    });
  }
  client.handle(({ method, params }) => {
    record(method, params);
    throw createRPCError('NotImplemented');
  });
});

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  let command;
  try {
    command = JSON.parse(line);
  } catch (err) {
    emit({ event: 'command_error', error: `not JSON: ${line}` });
    return;
  }
  if (command.cmd === 'configure') {
    Object.assign(idTags, command.idTags || {});
    Object.assign(fail, command.fail || {});
    emit({ event: 'configured', id: command.id });
    return;
  }
  if (!current) {
    emit({ event: 'command_error', id: command.id, error: 'no charge point connected' });
    return;
  }
  try {
    if (command.cmd === 'call') {
      const result = await current.call(command.method, command.params);
      emit({ event: 'result', id: command.id, result });
    } else if (command.cmd === 'raw') {
      current.sendRaw(command.data);
    } else if (command.cmd === 'close') {
      await current.close({ code: command.code || 1000, reason: command.reason || '' });
    }
  } catch (err) {
    emit({ event: 'error', id: command.id, code: err.rpcErrorCode || null, message: String(err.message) });
  }
});

server.listen(Number(option('--port', '0')), '127.0.0.1').then((httpServer) => {
  emit({ event: 'listening', port: httpServer.address().port });
});

process.on('SIGTERM', async () => {
  await server.close({ force: true });
  process.exit(0);
});
