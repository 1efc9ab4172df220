import { lookup } from 'node:dns/promises';
import type { HostResolver } from '../core/webhooks/endpoint-url';

/** Every address the system resolver gives for `host` (v4 and v6): the URL policy checks all of them. */
export const dnsResolver: HostResolver = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
