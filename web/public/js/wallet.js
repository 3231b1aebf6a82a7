// The wallet balance (payment-service). A new account's wallet is opened by an event
// (UserRegistered), so for a moment after sign-up there is none yet: that is `null`.

import { ApiError, api } from './api.js';
import { money } from './dom.js';

/** The caller's balance in cents, or a user's (admin only); null while not opened yet. */
export async function walletBalance(userId = null) {
  try {
    const wallet = await api('GET', userId ? `/api/v1/wallets/${userId}` : '/api/v1/wallets/me');
    return wallet.balance_cents;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export function walletText(balance, whose = 'Your wallet') {
  return balance === null ? `${whose}: not opened yet` : `${whose}: ${money(balance)}`;
}
