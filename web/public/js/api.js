// The one way the page talks to the API: same-origin `fetch` of /api/v1/..., the bearer
// token from the session, problem+json errors turned into ApiError.
//
// The token lives in sessionStorage (this tab only, gone when it closes), never in a
// cookie: no other origin can make the browser send it, and there is no CSRF to defend
// against. Requests are sent with `credentials: 'omit'`, so no cookie ever travels.

const TOKEN_KEY = 'shop.session';
const listeners = new Set();

function decodeClaims(token) {
  // Only to show who is signed in and which pages to offer; the services verify the
  // signature and decide what the token may do.
  const payload = token.split('.')[1] ?? '';
  const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
  return JSON.parse(json);
}

function load() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(TOKEN_KEY) ?? 'null');
    if (saved && saved.claims.exp * 1000 > Date.now()) return saved;
  } catch {
    // A damaged entry is the same as none.
  }
  sessionStorage.removeItem(TOKEN_KEY);
  return null;
}

let current = load();

export const session = {
  get token() {
    return current?.token ?? null;
  },
  get userId() {
    return current?.claims.sub ?? null;
  },
  get isAdmin() {
    return current?.claims.role === 'admin';
  },
  get email() {
    return current?.email ?? null;
  },
  /** Why the last session ended, when it was not the user's choice. */
  notice: null,
  start(token, email) {
    current = { token, email, claims: decodeClaims(token) };
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify(current));
    this.notice = null;
    listeners.forEach((listener) => listener());
  },
  end(notice = null) {
    current = null;
    sessionStorage.removeItem(TOKEN_KEY);
    this.notice = notice;
    listeners.forEach((listener) => listener());
  },
  onChange(listener) {
    listeners.add(listener);
  },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `The server answered ${status}.`);
    this.status = status;
    this.problem = problem;
  }

  /** Field-level messages of a 422, as `{field: "message; message"}`. */
  get fieldErrors() {
    const errors = this.problem?.errors ?? {};
    return Object.fromEntries(
      Object.entries(errors).map(([field, messages]) => [field, [].concat(messages).join('; ')]),
    );
  }
}

/**
 * Calls the API. `path` starts with /api/v1; `body` is sent as JSON; `headers` are added.
 * Resolves to the parsed JSON body; rejects with ApiError for a non-2xx answer, or with
 * the fetch TypeError when the network failed.
 */
export async function api(method, path, { body, headers = {} } = {}) {
  const init = {
    method,
    credentials: 'omit',
    cache: 'no-store',
    headers: { Accept: 'application/json, application/problem+json', ...headers },
  };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const token = session.token;
  if (token) init.headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    // An expired or revoked token: sign out so that the page asks to sign in again.
    if (response.status === 401 && token && token === session.token) {
      session.end('Your session has ended. Please sign in again.');
    }
    throw new ApiError(response.status, data);
  }
  return data;
}

/** Every page of a paginated list, following `next_cursor` up to `maxPages` pages. */
export async function listAll(path, { limit = 100, maxPages = 10 } = {}) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page += 1) {
    const separator = path.includes('?') ? '&' : '?';
    const url = `${path}${separator}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const answer = await api('GET', url);
    items.push(...answer.items);
    cursor = answer.next_cursor;
    if (!cursor) return { items, complete: true };
  }
  return { items, complete: false };
}

/** A random UUID, also where crypto.randomUUID is missing (plain http on another host). */
export function randomKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
