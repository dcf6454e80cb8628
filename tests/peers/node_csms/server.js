// A CSMS on ocpp-rpc in strict mode: every message in both directions is validated against
// the official OCPP 1.6 JSON schemas; a charge point that sends an invalid request gets a
// CallError, and a wrong Basic-auth password gets HTTP 401.
//
// Driven by the tests: options on the command line, commands as JSON lines on stdin, and
// everything that happens reported as JSON lines on stdout.
//
//   node server.js [--port N] [--password TEXT | --password-hex HEX] [--boot Accepted:300,Pending:1,...]
//                  [--tls-cert PEM --tls-key PEM [--client-ca PEM]] [--state JSON]
//
// --tls-cert/--tls-key: serve wss:// (TLS 1.2 or later; security profile 2). --client-ca: also
// require a client certificate signed by that CA whose commonName is the charge point identity
// of the URL (profile 3, whitepaper A00.FR.403/405); Basic auth is then not required (a password
// is ignored). --state: what a previous run reported in its "stopped" event, to go on from.
//
// stdin commands:
//   {"cmd": "call", "id": 1, "method": "DataTransfer", "params": {...}}   -> {"event": "result"|"error", "id": 1, ...}
//   {"cmd": "raw", "data": "..."}                                         -> sends the text as it is
//   {"cmd": "close", "code": 1000}                                        -> closes the current charge point
//
// stdout events: listening {port} (or listen_failed {error}), connect {identity, protocol, tls,
// client_cn, basic_auth}, auth_rejected {identity, reason, hadPassword}, tls_failed {reason,
// code}, frame, call, invalid, bad_message, close, result/error, stopped {state} on SIGTERM.

'use strict';

const fs = require('fs');
const https = require('https');
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
const tlsCert = option('--tls-cert');
const tlsKey = option('--tls-key');
const clientCa = option('--client-ca');
if (clientCa !== undefined && tlsCert === undefined) throw new Error('--client-ca needs --tls-cert');
const previous = JSON.parse(option('--state', '{}'));
let bootCount = previous.bootCount || 0;
let current = null;
const clients = new Set();
// How transaction requests are answered (see tests/peers CsmsBehaviour).
const idTags = previous.idTags || {};
const fail = previous.fail || {};
let nextTransactionId = previous.nextTransactionId || 1000;
let signCertificate = 'Accepted';  // SignCertificate.conf's status
// a StartTransaction sent again unchanged is the same transaction
const started = new Map(previous.started || []);

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

// The client certificate's serial number, upper-case hex without leading zeros (as the
// Python peer reports it): which certificate a charge point presented (whitepaper A02.FR.08).
function clientSerial(socket) {
  if (typeof socket.getPeerCertificate !== 'function') return null;
  const cert = socket.getPeerCertificate();
  if (!cert || !cert.serialNumber) return null;
  return cert.serialNumber.toUpperCase().replace(/^0+(?=.)/, '');
}

function commonName(socket) {
  if (typeof socket.getPeerCertificate !== 'function') return null;
  const cert = socket.getPeerCertificate();
  const cn = cert && cert.subject ? cert.subject.CN : undefined;
  if (cn === undefined) return null;
  return Array.isArray(cn) ? cn[cn.length - 1] : cn;
}

server.auth((accept, reject, handshake) => {
  const socket = handshake.request.socket;
  const session = {
    tls: Boolean(socket.encrypted),
    client_cn: commonName(socket),
    client_serial: clientSerial(socket),
    basic_auth: /^\s*basic\s/i.test(handshake.headers.authorization || ''),
  };
  const hadPassword = Boolean(handshake.password);
  if (clientCa !== undefined) {
    // Profile 3, A00.FR.405: the certificate (verified by the TLS layer) is this charge point's.
    if (session.client_cn !== handshake.identity) {
      const reason = `client certificate commonName ${JSON.stringify(session.client_cn)} is not the charge point identity`;
      emit({ event: 'auth_rejected', identity: handshake.identity, reason, hadPassword });
      reject(401, reason);
      return;
    }
  } else if (expected !== null && !(handshake.password && handshake.password.equals(expected))) {
    const reason = 'wrong charge point id or password';
    emit({ event: 'auth_rejected', identity: handshake.identity, reason, hadPassword });
    reject(401, reason);
    return;
  }
  accept(session);
});

server.on('client', (client) => {
  current = client;
  clients.add(client);
  emit({ event: 'connect', identity: client.identity, protocol: client.protocol, ...client.session });

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
    clients.delete(client);
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
  const notifications = [
    'StatusNotification', 'DiagnosticsStatusNotification', 'FirmwareStatusNotification',
    // the security extension's (whitepaper §5)
    'SecurityEventNotification', 'LogStatusNotification', 'SignedFirmwareStatusNotification',
  ];
  for (const method of notifications) {
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
  client.handle('SignCertificate', ({ params }) => {
    // The CSMS takes the CSR to its CA; the test signs it and sends CertificateSigned itself.
    record('SignCertificate', params);
    return { status: signCertificate };
  });
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
    if (command.signCertificate) signCertificate = command.signCertificate;
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

// OpenSSL's reason, as Python's ssl.SSLError.reason has it (ERR_SSL_TLSV1_ALERT_UNKNOWN_CA ->
// TLSV1_ALERT_UNKNOWN_CA; ERR_TLS_HANDSHAKE_TIMEOUT -> HANDSHAKE_TIMEOUT; ECONNRESET as it is).
function tlsCode(err) {
  return typeof err.code === 'string' ? err.code.replace(/^ERR_(SSL|TLS)_/, '') : null;
}

function tlsFailure(err, socket) {
  if (socket && socket.authorizationError) {
    // Node completes the handshake, then drops a client whose certificate does not verify.
    return { reason: `certificate verify failed: ${socket.authorizationError}`, code: 'CERTIFICATE_VERIFY_FAILED' };
  }
  return { reason: String(err.message), code: tlsCode(err) };
}

function listen() {
  const port = Number(option('--port', '0'));
  if (tlsCert === undefined) return server.listen(port, '127.0.0.1'); // as it always was
  const httpsServer = https.createServer({
    cert: fs.readFileSync(tlsCert),
    key: fs.readFileSync(tlsKey),
    minVersion: 'TLSv1.2', // A00.FR.312
    handshakeTimeout: 10000, // as the Python CSMS
    ...(clientCa !== undefined
      ? { ca: fs.readFileSync(clientCa), requestCert: true, rejectUnauthorized: true }
      : {}),
  }, (req, res) => {
    res.statusCode = 404; // only WebSocket upgrades, as server.listen() does
    res.end();
  });
  httpsServer.on('upgrade', server.handleUpgrade);
  httpsServer.on('tlsClientError', (err, socket) => {
    emit({ event: 'tls_failed', ...tlsFailure(err, socket) });
  });
  return new Promise((resolve, reject) => {
    httpsServer.once('error', reject);
    httpsServer.listen(port, '127.0.0.1', () => resolve(httpsServer));
  });
}

listen().then((httpServer) => {
  emit({ event: 'listening', port: httpServer.address().port });
}, (err) => {
  emit({ event: 'listen_failed', error: String(err.message) });
  process.exit(1);
});

process.on('SIGTERM', async () => {
  const state = { bootCount, idTags, fail, nextTransactionId, started: Array.from(started) };
  // Going Away to every charge point (as the Python CSMS does), then whatever is left is cut.
  const closed = Promise.all(Array.from(clients).map((client) => client.close({ code: 1001 })));
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 5000))]);
  await server.close({ force: true });
  emit({ event: 'stopped', state });
  process.exit(0);
});
