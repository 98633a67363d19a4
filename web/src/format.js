// How the dashboard writes numbers and times; the browser test formats the API's numbers
// with the same functions and looks for them on the page.

export function int(n) {
  return Number(n ?? 0).toLocaleString('en-US');
}

export function usd(n) {
  return `$${Number(n ?? 0).toFixed(4)}`;
}

/** `2026-03-12T10:00:00.123Z` → `2026-03-12 10:00:00` (UTC, as the audit log writes it). */
export function when(ts) {
  return ts ? `${ts.slice(0, 10)} ${ts.slice(11, 19)}` : '—';
}

export function duration(secs) {
  const s = Math.floor(secs ?? 0);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return `${m}m ${s % 60}s`;
}
