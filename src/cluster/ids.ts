// Session ids that name their owner: c1.<nodeId>.<inc>.<rand>.<mac>. Any node decodes one without asking Redis;
// the MAC means a client can neither forge an id to steer a request to a node nor probe nodes with made-up ids.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ClusterKeys } from './keys.js';

export interface SessionOwner {
  nodeId: string;
  inc: string;
}

const SHAPE = /^c1\.([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)\.([A-Za-z0-9_-]{11})\.([A-Za-z0-9_-]{24})\.([A-Za-z0-9_-]{16})$/;

function mac(key: Buffer, nodeId: string, inc: string, rand: string): Buffer {
  return createHmac('sha256', key).update(`berth-sid-v1|${nodeId}|${inc}|${rand}`).digest().subarray(0, 12);
}

/** A new incarnation tag: a restarted node gets a new one, so its predecessor's ids are dead at once. */
export function newIncarnation(): string {
  return randomBytes(8).toString('base64url');
}

export function mintSessionId(keys: ClusterKeys, owner: SessionOwner): string {
  const rand = randomBytes(18).toString('base64url'); // 144 bits
  return `c1.${owner.nodeId}.${owner.inc}.${rand}.${mac(keys.sign.sid, owner.nodeId, owner.inc, rand).toString('base64url')}`;
}

/** The owner of a cluster id, or undefined when its shape or MAC is wrong (answered 404 without a hop). */
export function sessionOwner(keys: ClusterKeys, id: string): SessionOwner | undefined {
  const m = SHAPE.exec(id);
  if (!m) return undefined;
  const [, nodeId, inc, rand, tag] = m as unknown as [string, string, string, string, string];
  const given = Buffer.from(tag, 'base64url');
  if (given.length !== 12) return undefined;
  for (const k of keys.verify.sid) if (timingSafeEqual(given, mac(k, nodeId, inc, rand))) return { nodeId, inc };
  return undefined;
}
