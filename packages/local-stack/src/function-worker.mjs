// One Lambda function inside a worker thread (plain JavaScript so that it loads without a TypeScript
// loader, whatever runs the parent: tsx, vitest or node).
//
// Init phase: import the function's bundle from its cdk.out asset directory and find the handler.
// Invoke phase: the parent posts {type:'invoke'} messages; each one runs concurrently with the others
// and is answered with {type:'result'}. The parent enforces the timeout; {type:'ping'} lets it check
// that this thread's event loop still turns.
import dns from 'node:dns';
import { existsSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';

const { assetDir, handler: handlerSpec, sourceMaps } = workerData;

resolveLocalhostSubdomainsToLoopback();
if (sourceMaps && typeof process.setSourceMapsEnabled === 'function') process.setSourceMapsEnabled(true);

/**
 * RFC 6761 reserves *.localhost for loopback, but glibc does not resolve subdomains of it. Emulators
 * hand out URLs such as http://sqs.us-east-1.localhost:PORT/000000000000/queue, and an SDK client that
 * uses the queue URL as its endpoint must still reach 127.0.0.1. This patches dns.lookup of this
 * thread only (every worker has its own module instances).
 */
function resolveLocalhostSubdomainsToLoopback() {
  const original = dns.lookup;
  dns.lookup = function lookup(hostname, options, callback) {
    if (typeof hostname !== 'string' || !hostname.toLowerCase().endsWith('.localhost')) {
      return original.call(dns, hostname, options, callback);
    }
    const cb = typeof options === 'function' ? options : callback;
    const opts = typeof options === 'object' && options !== null ? options : {};
    process.nextTick(() => {
      if (opts.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
      else cb(null, '127.0.0.1', 4);
    });
    return undefined;
  };
}

function serializeError(err, fallbackType = 'Error') {
  if (err instanceof Error) {
    return {
      errorType: err.name && err.name !== 'Error' ? err.name : err.constructor?.name || fallbackType,
      errorMessage: err.message,
      trace: typeof err.stack === 'string' ? err.stack.split('\n') : [],
    };
  }
  if (err && typeof err === 'object') {
    return { errorType: fallbackType, errorMessage: safeJson(err) ?? String(err), trace: [] };
  }
  return { errorType: typeof err === 'string' ? 'string' : fallbackType, errorMessage: String(err), trace: [] };
}

function safeJson(value) {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined;
  }
}

async function loadHandler() {
  const dot = handlerSpec.lastIndexOf('.');
  if (dot <= 0) throw Object.assign(new Error(`Bad handler "${handlerSpec}": expected <module>.<export>`), { name: 'Runtime.MalformedHandlerName' });
  const moduleName = handlerSpec.slice(0, dot);
  const exportName = handlerSpec.slice(dot + 1);
  const file = ['.mjs', '.js', '.cjs'].map((ext) => path.join(assetDir, moduleName + ext)).find((f) => existsSync(f));
  if (!file) {
    throw Object.assign(new Error(`Cannot find module '${moduleName}' in ${assetDir}`), { name: 'Runtime.ImportModuleError' });
  }
  let mod;
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (err) {
    if (err && err.code === 'ERR_MODULE_NOT_FOUND') err.name = 'Runtime.ImportModuleError';
    throw err;
  }
  const fn = mod[exportName] ?? mod.default?.[exportName];
  if (typeof fn !== 'function') {
    throw Object.assign(new Error(`${moduleName}.${exportName} is undefined or not exported`), { name: 'Runtime.HandlerNotFound' });
  }
  return fn;
}

/** This thread's id in the operating system (Linux: /proc/thread-self), for per-function CPU figures. */
function osThreadId() {
  try {
    return Number(readlinkSync('/proc/thread-self').split('/').pop());
  } catch {
    return undefined;
  }
}

let handler;
try {
  handler = await loadHandler();
  parentPort.postMessage({ type: 'ready', osThreadId: osThreadId() });
} catch (err) {
  parentPort.postMessage({ type: 'init-error', error: serializeError(err, 'Runtime.ImportModuleError') });
}

function makeContext(c, done) {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: c.functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: c.invokedFunctionArn,
    memoryLimitInMB: String(c.memoryLimitInMB),
    awsRequestId: c.awsRequestId,
    logGroupName: c.logGroupName,
    logStreamName: c.logStreamName,
    identity: undefined,
    clientContext: c.clientContext,
    getRemainingTimeInMillis: () => Math.max(0, c.deadlineMs - Date.now()),
    done: (err, value) => done(err, value),
    succeed: (value) => done(null, value),
    fail: (err) => done(err ?? new Error('failed')),
  };
}

function callHandler(event, c) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (err, value) => {
      if (settled) return;
      settled = true;
      if (err !== null && err !== undefined) reject(err);
      else resolve(value);
    };
    const context = makeContext(c, done);
    // As the Lambda runtime does per invocation; Powertools Logger puts it on every line as xray_trace_id.
    // Concurrent invocations of one sandbox share the variable (Lambda never runs two at once in one).
    if (c.traceId) process.env._X_AMZN_TRACE_ID = c.traceId;
    try {
      const usesCallback = handler.length >= 3;
      const returned = usesCallback ? handler(event, context, done) : handler(event, context);
      if (returned && typeof returned.then === 'function') returned.then((v) => done(null, v), (e) => done(e));
      else if (!usesCallback) done(null, returned);
    } catch (err) {
      done(err);
    }
  });
}

async function run(msg) {
  let reply;
  try {
    const event = JSON.parse(msg.event);
    const value = await callHandler(event, msg.context);
    // Lambda returns the JSON serialization of the handler's result.
    let payload;
    try {
      payload = value === undefined ? 'null' : JSON.stringify(value);
    } catch (err) {
      throw Object.assign(new Error(`Unable to stringify response body: ${err.message}`), { name: 'Runtime.MarshalError' });
    }
    reply = { type: 'result', id: msg.id, ok: true, payload: payload ?? 'null' };
  } catch (err) {
    reply = { type: 'result', id: msg.id, ok: false, error: serializeError(err) };
  }
  parentPort.postMessage(reply);
}

parentPort.on('message', (msg) => {
  if (msg.type === 'invoke') void run(msg);
  else if (msg.type === 'ping') parentPort.postMessage({ type: 'pong', id: msg.id });
});
