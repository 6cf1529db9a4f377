// SMU web app, part 7: the node. Who it is, its peers, what it holds (events,
// accounts, the event-set digest), and charts of its replication traffic over
// the last hour from the counters the node samples.
"use strict";

(function () {
  const { h, svg } = SMU;
  let timer = null;

  function render(main) {
    // The parts that reload every few seconds, and the form, which stays
    // (so what the user types survives a reload).
    const parts = {
      facts: h("div", {}, h("p", { class: "loading" }, "Loading…")),
      charts: h("div", { class: "charts" }),
      peers: h("div"),
      counters: h("tbody"),
    };
    main.append(
      h("h1", {}, "Node"),
      h("section", { class: "card", "aria-labelledby": "node-title" }, h("h2", { id: "node-title" }, "This node"), parts.facts),
      h(
        "section",
        { class: "card", "aria-labelledby": "traffic-title" },
        h("h2", { id: "traffic-title" }, "Replication, last hour"),
        parts.charts,
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "peers-title" },
        h("h2", { id: "peers-title" }, "Peers"),
        parts.peers,
        h("h3", {}, "Connect to a peer"),
        connectForm(),
      ),
      h(
        "section",
        { class: "card" },
        h("details", {}, h("summary", {}, "All counters"), h("table", {}, parts.counters)),
      ),
    );
    load(parts);
  }

  async function load(parts) {
    window.clearTimeout(timer);
    let doc;
    try {
      doc = await SMU.get("/api/node");
    } catch (err) {
      SMU.clear(parts.facts).append(h("p", { class: "error" }, err.message));
      return;
    }
    if (!SMU.isCurrent("node") || !parts.facts.isConnected) return;
    const s = doc.status;
    SMU.clear(parts.facts).append(
      h(
        "dl",
        { class: "facts" },
        fact("Peer id", s.peer_id, true),
        fact("Network", s.network),
        fact("Listening on", s.listen.join("\n"), true),
        fact("Connected peers", String(s.peers)),
        fact("Events held", String(s.events)),
        fact("Accounts", String(s.accounts)),
        fact("Waiting for parents", String(s.escrow)),
        fact("Event-set digest", s.event_set_digest, true),
        fact("This device", s.device_fingerprint, true),
        s.disk ? fact("Disk", diskText(s.disk)) : null,
        s.clock ? fact("Clock", clockText(s.clock)) : null,
        s.reachability ? fact("Reachable", reachText(s.reachability)) : null,
      ),
      h("p", { class: "hint" }, "Two nodes with the same event-set digest hold exactly the same events."),
    );
    SMU.clear(parts.charts).append(
      chart(doc.history, "bytes_sent", "bytes_received", "Bytes", ["sent", "received"]),
      chart(doc.history, "events_received", "events_delivered", "Events", ["received", "new to this node"]),
    );
    SMU.clear(parts.peers).append(peersTable(doc.peers));
    SMU.clear(parts.counters).append(counters(s));
    timer = window.setTimeout(() => load(parts), 5000);
  }

  // The disk budget and the clock check (PROTOCOL.md §13.3), in words.
  function diskText(d) {
    const used = amount(d.used_bytes, "Bytes");
    const of = d.budget_bytes ? ` of ${amount(d.budget_bytes, "Bytes")}` : "";
    return d.full ? `full (${used}${of}): not accepting new data` : `${used}${of} used`;
  }

  // Reachability from the node's own dial-back probe (PROTOCOL.md §17.4).
  function reachText(r) {
    const relays = r.relays && r.relays.length ? `; relays: ${r.relays.length}` : "";
    return `${String(r.reachability).replaceAll("_", " ")}${relays}`;
  }

  function clockText(c) {
    if (c.median_offset_ms === null || c.median_offset_ms === undefined) return "not compared with peers yet";
    const off = `${Math.round(c.median_offset_ms / 1000)} s from its peers (median of ${c.peers_asked})`;
    return c.warning ? `off by ${off}: set this machine's clock` : off;
  }

  function fact(term, value, mono) {
    return [h("dt", {}, term), h("dd", { class: mono ? "mono" : null }, value)];
  }

  // Differences between samples: what happened in each interval.
  function deltas(history, key) {
    const i = history.keys.indexOf(key) + 1;
    const out = [];
    for (let j = 1; j < history.samples.length; j++) {
      out.push(Math.max(0, history.samples[j][i] - history.samples[j - 1][i]));
    }
    return out;
  }

  function amount(n, unit) {
    if (unit !== "Bytes") return String(n);
    if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
    if (n >= 1024) return (n / 1024).toFixed(1) + " KiB";
    return n + " B";
  }

  function chart(history, key0, key1, unit, names) {
    const a = deltas(history, key0);
    const b = deltas(history, key1);
    const W = 360;
    const H = 120;
    const top = Math.max(1, ...a, ...b);
    const n = Math.max(a.length, 1);
    const slot = W / n;
    const bars = [];
    a.forEach((v, i) => {
      const ha = (v / top) * (H - 14);
      const hb = (b[i] / top) * (H - 14);
      bars.push(
        svg("rect", { class: "s0", x: i * slot + slot * 0.1, y: H - ha, width: slot * 0.38, height: ha }),
        svg("rect", { class: "s1", x: i * slot + slot * 0.52, y: H - hb, width: slot * 0.38, height: hb }),
      );
    });
    const minutes = Math.round((history.samples.length - 1) * history.interval_s / 60);
    const sum = (xs) => xs.reduce((x, y) => x + y, 0);
    const label =
      `${unit} ${names[0]} and ${names[1]} per ${history.interval_s} seconds over the last ` +
      `${minutes || "<1"} minutes: ${amount(sum(a), unit)} ${names[0]}, ${amount(sum(b), unit)} ${names[1]}; ` +
      `the busiest interval ${amount(top, unit)}.`;
    return h(
      "figure",
      { class: "chart" },
      h("figcaption", {}, unit),
      svg(
        "svg",
        { viewBox: `0 0 ${W} ${H + 14}`, role: "img", "aria-label": label, preserveAspectRatio: "none" },
        svg("title", {}, label),
        svg("line", { class: "axis", x1: 0, y1: H, x2: W, y2: H }),
        svg("text", { x: 2, y: 10 }, amount(top, unit)),
        svg("text", { x: 2, y: H + 12 }, minutes ? `${minutes} min ago` : "just now"),
        svg("text", { x: W - 2, y: H + 12, "text-anchor": "end" }, "now"),
        bars,
      ),
      h("div", { class: "legend", "aria-hidden": "true" }, h("span", { class: "k0" }, names[0]), h("span", { class: "k1" }, names[1])),
    );
  }

  function connectForm() {
    const err = h("p", { class: "error", role: "alert" });
    const addr = h("input", { id: "peer-addr", spellcheck: "false", placeholder: "/ip4/…/tcp/…/p2p/…" });
    const go = h("button", { type: "submit" }, "Connect");
    const form = h(
      "form",
      { class: "row" },
      h("label", { for: "peer-addr", class: "sr-only" }, "Peer address"),
      h("div", { class: "grow" }, addr),
      go,
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      SMU.busy(go, err, async () => {
        const done = await SMU.post("/api/peers/connect", { addr: addr.value.trim() });
        SMU.toast(`Connected to ${done.peer_id.slice(0, 16)}…`);
        addr.value = "";
      });
    });
    return h("div", {}, form, err);
  }

  function peersTable(peers) {
    if (!peers.peers.length) return h("p", { class: "hint" }, "Not connected to any peer.");
    return h(
      "table",
      {},
      h("caption", { class: "sr-only" }, `${peers.peers.length} connected peers`),
      h("thead", {}, h("tr", {}, ["Peer id", "Direction", "Connection", "Score"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        peers.peers.map((p) =>
          h(
            "tr",
            {},
            h("td", { class: "mono" }, p.peer_id),
            h("td", {}, p.direction),
            h("td", { class: p.connection === "direct" ? null : "mono" }, p.connection || "direct"),
            h("td", { class: "num" }, String(p.score)),
          ),
        ),
      ),
    );
  }

  function counters(s) {
    const rows = [];
    for (const [group, values] of [
      ["replication", s.replication],
      ["links", s.links],
    ]) {
      for (const [name, value] of Object.entries(values)) {
        if (typeof value !== "number") continue;
        rows.push(
          h("tr", {}, h("td", {}, `${group}: ${name.replaceAll("_", " ")}`), h("td", { class: "num" }, String(value))),
        );
      }
    }
    return rows;
  }

  SMU.screens.node = { render };
})();
