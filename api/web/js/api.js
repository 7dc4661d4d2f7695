// The one way the app talks to the server: same-origin fetches of the JSON API. Errors
// become `ApiError`s carrying the problem document's stable `code`.

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `the server answered ${status}`);
    this.status = status;
    this.code = (problem && problem.code) || (status === 0 ? 'network' : `http_${status}`);
  }
}

let onSignedOut = () => {};

/** Called when the server says the session is over (401), wherever that happens. */
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

/** Sends a request; `json` is sent as a JSON body, `form` as multipart. */
export async function request(path, { method = 'GET', json, form, headers = {} } = {}) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json', ...headers } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers['content-type'] = 'application/json';
  } else if (form) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { detail: 'The server could not be reached. Check your connection and try again.' });
  }
  const text = response.status === 304 ? '' : await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (response.status === 401 && !path.startsWith('/auth/')) onSignedOut();
  if (!response.ok && response.status !== 304) throw new ApiError(response.status, data);
  return { status: response.status, headers: response.headers, data };
}

/** The JSON body of a successful request. */
export async function api(path, options) {
  return (await request(path, options)).data;
}

/** A link the page may load: our own URLs as paths, so they stay same-origin even when
 * the page was opened under another name of this server (localhost vs 127.0.0.1). */
export function localUrl(url) {
  const parsed = new URL(url, window.location.href);
  if (parsed.pathname.startsWith('/v1/')) return parsed.pathname + parsed.search;
  // Only web links: a `javascript:` or `data:` address never reaches an href.
  return parsed.protocol === 'https:' || parsed.protocol === 'http:' ? parsed.href : '#';
}
