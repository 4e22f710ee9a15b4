// The page's only data path: the REST API, with the browser's session (and its CSRF token for writes).

const CONFIG = JSON.parse(document.getElementById("dashboard-config").textContent);

export class ApiError extends Error {
  constructor(status, body) {
    super(errorText(body) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// The API's own messages, as it words them: `{"detail", "code"}` (409/502) or DRF's
// `{"field": ["message"]}` (400).
export function errorText(body) {
  if (!body || typeof body !== "object") return "";
  if (typeof body.detail === "string") return body.code ? `${body.detail} (${body.code})` : body.detail;
  return Object.entries(body)
    .map(([field, messages]) => {
      const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
      return field === "non_field_errors" ? text : `${field.replace(/_/g, " ")}: ${text}`;
    })
    .join("; ");
}

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]').content;
}

export async function api(path, { method = "GET", body, params } = {}) {
  const url = new URL(path.startsWith("/") ? path : CONFIG.api + path, window.location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (method !== "GET") {
    headers["X-CSRFToken"] = csrfToken();
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body || {});
  }
  const response = await fetch(url, init);
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401 || (response.status === 403 && method === "GET")) {
    // The session ended: back to the login page, then here again.
    window.location.assign(`${CONFIG.login}?next=${encodeURIComponent(window.location.pathname)}`);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// A list endpoint's rows (limit-offset or cursor pages both answer `results`).
export async function list(path, params) {
  const data = await api(path, { params });
  return Array.isArray(data) ? data : data.results;
}

// Every page of a cursor-paginated list, following `next` up to `maxPages`.
export async function allPages(path, params, maxPages = 5) {
  let data = await api(path, { params });
  const rows = [...data.results];
  for (let page = 1; data.next && page < maxPages; page += 1) {
    const next = new URL(data.next);
    data = await api(next.pathname + next.search);
    rows.push(...data.results);
  }
  return rows;
}

export { CONFIG };
