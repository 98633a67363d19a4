// Talks to the admin API. The login lives in an HttpOnly cookie the page cannot read; the
// CSRF token comes from /admin/login or, after a reload, from GET /admin/session. Any 401
// means "logged out" and shows the login page.

export const auth = $state({ status: 'unknown', csrf: null, keyId: null });

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && auth.csrf) headers['X-CSRF-Token'] = auth.csrf;
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    if (res.status === 401 && path !== '/admin/login') {
      auth.status = 'out';
      auth.csrf = null;
    }
    throw new ApiError(res.status, data?.code ?? 'ERROR', data?.error ?? `HTTP ${res.status}`);
  }
  return data;
}

/** Asks the server whether the cookie is still good (a reload keeps the login). */
export async function restore() {
  try {
    const s = await api('/admin/session');
    auth.csrf = s.csrf_token;
    auth.keyId = s.key_id;
    auth.status = 'in';
  } catch {
    auth.status = 'out';
  }
}

export async function login(key) {
  const r = await api('/admin/login', { method: 'POST', body: { key } });
  auth.csrf = r.csrf_token;
  await restore();
}

export async function logout() {
  try {
    await api('/admin/logout', { method: 'POST' });
  } finally {
    auth.status = 'out';
    auth.csrf = null;
  }
}
