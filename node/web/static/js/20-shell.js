// SMU web app, part 2: the frame around the screens (the bar, the banner, the
// navigation), the router, and the live connection to the node.
"use strict";

SMU.NAV = [
  ["conversations", "Conversations"],
  ["contacts", "Contacts"],
  ["trash", "Trash"],
  ["account", "This account"],
  ["node", "Node"],
];

SMU.buildNav = function () {
  // the skip link moves focus; following "#main" would change the route
  document.querySelector(".skip").addEventListener("click", (e) => {
    e.preventDefault();
    SMU.$("main").focus();
  });
  const nav = SMU.clear(SMU.$("nav"));
  for (const [name, label] of SMU.NAV) {
    nav.append(
      SMU.h(
        "button",
        { type: "button", "data-screen": name, onclick: () => SMU.go(name) },
        SMU.h("span", {}, label),
        SMU.h("span", { class: "badge", id: `badge-${name}` }),
      ),
    );
  }
};

SMU.refreshState = async function () {
  const state = await SMU.get("/api/state");
  const before = SMU.state;
  SMU.state = state;
  const who = SMU.$("who");
  who.textContent = state.account
    ? `${state.account.handle || state.account.account_id.slice(0, 12)} · ${state.node.device_name}`
    : `${state.node.device_name} (no account yet)`;
  SMU.showBanner(state);
  SMU.setBadge("conversations", state.unread + state.requests, (n) =>
    SMU.plural(n, "unread message or request", "unread messages or requests"),
  );
  SMU.setBadge("account", state.pending, (n) => SMU.plural(n, "device waiting", "devices waiting"));
  const hadAccount = before && before.account;
  if (before && !hadAccount !== !state.account) SMU.route();
  if (state.pending) SMU.emit("pending");
  return state;
};

SMU.setBadge = function (name, n, describe) {
  const el = SMU.$(`badge-${name}`);
  if (!el) return;
  el.textContent = n ? String(n) : "";
  if (n) el.setAttribute("aria-label", describe(n));
  else el.removeAttribute("aria-label");
};

// A revoked (or otherwise ended) device says so on every screen.
SMU.showBanner = function (state) {
  const banner = SMU.clear(SMU.$("banner"));
  const dev = state.device;
  if (state.account && dev && !dev.active) {
    const by = dev.ended_by ? ` by ${dev.ended_by}` : "";
    const when = dev.ended_at_ms ? ` on ${SMU.when(dev.ended_at_ms)}` : "";
    const what = dev.status === "revoked" ? `was revoked${by}${when}` : `is ${dev.status.replaceAll("_", " ")}`;
    banner.append(
      SMU.h("strong", {}, `This device (${dev.name}) ${what}.`),
      "It can no longer send messages, read new ones or act for the account.",
    );
    banner.hidden = false;
  } else if (state.account && state.account.status !== "ok" && state.account.status !== "unknown") {
    banner.append(
      SMU.h("strong", {}, `This account is ${state.account.status}.`),
      "Its devices cannot be trusted until it is recovered with the recovery key.",
    );
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
};

SMU.deviceActive = () => !!(SMU.state && SMU.state.device && SMU.state.device.active);

// -- routing: #/screen/argument ------------------------------------------------

SMU.go = function (screen, arg) {
  const hash = "#/" + screen + (arg ? "/" + arg : "");
  if (window.location.hash === hash) SMU.route(true);
  else window.location.hash = hash;
};

SMU.route = function (moveFocus) {
  // `hold`: a screen that must stay until the user is done (the recovery key)
  if (!SMU.key || !SMU.state || SMU.hold) return;
  const main = SMU.$("main");
  const nav = SMU.$("nav");
  if (!SMU.state.account) {
    nav.hidden = true;
    main.classList.remove("flush");
    SMU.current = { name: "setup" };
    SMU.screens.setup.render(SMU.clear(main));
    return;
  }
  nav.hidden = false;
  const parts = window.location.hash.replace(/^#\/?/, "").split("/");
  const name = SMU.screens[parts[0]] && parts[0] !== "setup" ? parts[0] : "conversations";
  const arg = parts[1] || null;
  for (const b of nav.querySelectorAll("button")) {
    if (b.dataset.screen === name) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  SMU.current = { name, arg };
  main.classList.toggle("flush", name === "conversations");
  SMU.screens[name].render(SMU.clear(main), arg);
  if (moveFocus !== false) {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
  }
};

SMU.isCurrent = (name, arg) =>
  SMU.current && SMU.current.name === name && (arg === undefined || SMU.current.arg === arg);

// -- the live connection --------------------------------------------------------

SMU.connectLive = function () {
  let socket = null;
  let stopped = false;
  let pause = 500;
  const status = SMU.$("connection");

  function open() {
    if (stopped) return;
    socket = new WebSocket(`ws://${window.location.host}/api/live`);
    socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "auth", key: SMU.key })));
    socket.addEventListener("message", (e) => {
      let event;
      try {
        event = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      handle(event);
    });
    socket.addEventListener("close", (e) => {
      status.className = "connection off";
      status.textContent = "Reconnecting…";
      if (e.code === 4401) {
        SMU.signedOut("This session was ended.");
        return;
      }
      window.setTimeout(open, pause);
      pause = Math.min(pause * 2, 10000);
    });
  }

  function handle(event) {
    if (event.type === "hello") {
      pause = 500;
      status.className = "connection";
      status.textContent = "Live";
      SMU.emit("reconnected");
    } else if (event.type === "message") {
      SMU.emit("message", event.message);
    } else if (event.type === "delivery") {
      SMU.emit("delivery", event);
    } else if (event.type === "changed") {
      SMU.emit("changed:" + event.what);
    }
  }

  open();
  SMU.live = {
    stop() {
      stopped = true;
      if (socket) socket.close();
    },
  };
};

// What changed on the node that the frame shows itself.
SMU.on("changed:account", () => SMU.refreshState().catch(() => {}));
SMU.on("changed:pending", () => SMU.refreshState().catch(() => {}));
SMU.on("changed:conversations", () => SMU.refreshState().catch(() => {}));
SMU.on("reconnected", () => SMU.refreshState().catch(() => {}));
SMU.on("message", (m) => {
  if (!m.outgoing) SMU.refreshState().catch(() => {});
});
