// SMU web app, part 0: the shared namespace, building the page, talking to the node.
//
// Every name, message and history line from the node is put into the page as
// text (text nodes, textContent), never as HTML: `h` below is the only way
// this app makes elements, and it has no way to take markup.
"use strict";

const SMU = (window.SMU = {
  state: null, // what /api/state said last
  key: null, // this tab's session key (sessionStorage): sent as X-SMU-Key
  proven: false, // the server proved it holds the node's web key
  screens: {},
  listeners: {},
  // for tests and bench/web.py: when each live message was shown
  metrics: { shown: {} },
});

// -- elements ---------------------------------------------------------------

SMU.h = function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  SMU.setAttrs(el, attrs);
  SMU.append(el, children);
  return el;
};

SMU.svg = function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  SMU.setAttrs(el, attrs);
  SMU.append(el, children);
  return el;
};

SMU.setAttrs = function (el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) {
      if (typeof v !== "function") throw new TypeError("handlers are functions");
      el.addEventListener(k.slice(2), v);
    } else if (k === "class") {
      el.setAttribute("class", v);
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
};

SMU.append = function (el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
};

SMU.clear = function (el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
};

SMU.$ = (id) => document.getElementById(id);

// -- words ------------------------------------------------------------------

SMU.when = function (ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const today = new Date();
  if (d.toDateString() === today.toDateString()) {
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  return d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
};

SMU.plural = (n, one, many) => `${n} ${n === 1 ? one : many || one + "s"}`;

// Tell screen readers something without moving focus.
SMU.announce = function (text) {
  const el = SMU.$("announce");
  el.textContent = "";
  window.setTimeout(() => (el.textContent = text), 30);
};

// One toast at a time: a new one replaces the last.
SMU.toast = function (text) {
  const old = document.querySelector(".toast");
  if (old) old.remove();
  const el = SMU.h("div", { class: "toast", role: "status" }, text);
  document.body.append(el);
  window.setTimeout(() => el.remove(), 3500);
};

// -- events between the parts -----------------------------------------------

SMU.on = function (what, fn) {
  (SMU.listeners[what] = SMU.listeners[what] || []).push(fn);
};

SMU.emit = function (what, value) {
  for (const fn of SMU.listeners[what] || []) {
    try {
      fn(value);
    } catch (err) {
      console.error(err);
    }
  }
};

// -- the node's API ---------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}
SMU.ApiError = ApiError;

SMU.api = async function (path, body) {
  const opts = {
    method: body === undefined ? "GET" : "POST",
    headers: {},
    credentials: "same-origin",
    cache: "no-store",
    redirect: "error",
  };
  if (SMU.key) opts.headers["X-SMU-Key"] = SMU.key;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, opts);
  } catch (err) {
    throw new ApiError(0, "the node does not answer: is it still running?");
  }
  let doc = {};
  try {
    doc = await response.json();
  } catch (err) {
    doc = {};
  }
  if (response.status === 401 && !path.startsWith("/api/session")) {
    SMU.signedOut(doc.error);
  }
  if (!response.ok) throw new ApiError(response.status, doc.error || response.statusText);
  return doc;
};

SMU.get = (path, params) => {
  const query = params ? "?" + new URLSearchParams(params).toString() : "";
  return SMU.api(path + query);
};
SMU.post = (path, body) => SMU.api(path, body || {});

// A button that runs `action` once at a time and shows its error beside it.
SMU.busy = async function (button, errorEl, action) {
  if (button) button.disabled = true;
  if (errorEl) errorEl.textContent = "";
  try {
    return await action();
  } catch (err) {
    if (errorEl) errorEl.textContent = err.message;
    else SMU.toast(err.message);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
};

SMU.copyButton = function (getText, label) {
  const b = SMU.h("button", { type: "button" }, label || "Copy");
  b.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(getText());
      SMU.toast("Copied");
    } catch (err) {
      SMU.toast("Copying is not allowed here: select the text and copy it");
    }
  });
  return b;
};

// A QR code the node computed (rows of modules), drawn as one SVG path.
SMU.qr = function (qr, label) {
  const quiet = 2;
  const n = qr.size + 2 * quiet;
  let d = "";
  qr.rows.forEach((row, y) => {
    for (let x = 0; x < row.length; x++) {
      if (row[x] === "1") d += `M${x + quiet} ${y + quiet}h1v1h-1z`;
    }
  });
  return SMU.svg(
    "svg",
    { class: "qr", viewBox: `0 0 ${n} ${n}`, role: "img", "aria-label": label, "shape-rendering": "crispEdges" },
    SMU.svg("title", {}, label),
    SMU.svg("path", { d }),
  );
};

// A modal dialog (the native <dialog>: focus stays inside, Escape closes).
SMU.dialog = function (title, ...body) {
  const dlg = SMU.$("dialog");
  if (dlg.open) dlg.close();
  SMU.clear(dlg);
  SMU.append(dlg, [SMU.h("h2", { id: "dialog-title" }, title), body]);
  dlg.showModal();
  const first = dlg.querySelector("[autofocus], input, textarea, button.primary, button");
  if (first) first.focus();
  return dlg;
};

SMU.closeDialog = function () {
  const dlg = SMU.$("dialog");
  if (dlg.open) dlg.close();
};
