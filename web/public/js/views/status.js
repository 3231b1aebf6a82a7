// How an order's status and reason read everywhere: the status word itself (pending,
// confirmed, rejected, cancelled) and the status_reason code as text, with a gloss.

import { h } from '../dom.js';
import { REASONS } from '../saga.js';

export function statusBadge(status) {
  return h('span', { class: `status status-${status}` }, status);
}

/** The reason code and its gloss, or nothing when the order has no reason. */
export function reasonText(reason) {
  if (!reason) return null;
  const gloss = REASONS[reason];
  return h('span', { class: 'reason' }, h('code', {}, reason), gloss ? ` (${gloss})` : null);
}
