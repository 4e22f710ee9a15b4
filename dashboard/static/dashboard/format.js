// Display only: the API sends decimals as strings with the database's ten places.

export function trimZeros(value) {
  if (value === null || value === undefined || value === "") return "—";
  const text = String(value);
  if (!text.includes(".")) return text;
  return text.replace(/0+$/, "").replace(/\.$/, "");
}

// A price for reading: the API's exact value, cut to a sensible number of places (a computed
// liquidation price has ten).
export function price(value) {
  if (value === null || value === undefined || value === "") return "—";
  const number = Math.abs(Number(value));
  const places = number >= 1000 ? 2 : number >= 1 ? 4 : 8;
  return trimZeros(Number(value).toFixed(places));
}

export function money(value, { sign = false } = {}) {
  if (value === null || value === undefined || value === "") return "—";
  const number = Number(value);
  const text = number.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return sign && number > 0 ? `+${text}` : text;
}

export function percent(fraction) {
  if (fraction === null || fraction === undefined) return "—";
  const number = Number(fraction) * 100;
  return `${number > 0 ? "+" : ""}${number.toFixed(2)} %`;
}

export function signClass(value) {
  const number = Number(value);
  if (!value || Number.isNaN(number) || number === 0) return "";
  return number > 0 ? "pos" : "neg";
}

export function time(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toISOString().replace("T", " ").slice(0, 19);
}

export function shortTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  const today = new Date().toISOString().slice(0, 10);
  const text = date.toISOString();
  return text.slice(0, 10) === today ? text.slice(11, 19) : text.slice(5, 16).replace("T", " ");
}

// Build an element: el("td", {class: "num", text: "1"}, child...).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "title" || key === "type") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}
