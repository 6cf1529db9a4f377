// SMU web app, part 4: conversations. The list (unread counts, message
// requests), one conversation (messages with their delivery to each device),
// sending, and new messages as the node stores them.
"use strict";

(function () {
  const { h } = SMU;
  let listEl = null; // the <ul> of conversations, while this screen is shown
  let requestsEl = null;
  let openId = null; // the conversation shown
  let messagesEl = null;
  let listTimer = null;
  let newestIn = 0; // the newest incoming sent_ms shown: read up to there
  let firstRender = true;

  function render(main, arg) {
    openId = arg;
    listEl = h("ul", { class: "conv-list", "aria-label": "Conversations" });
    requestsEl = h("div");
    const convPane = h("section", { class: "conv-pane", "aria-label": "Conversation" });
    main.append(
      h(
        "div",
        { class: "split" },
        h("div", { class: "list-pane" }, h("h1", {}, "Conversations"), requestsEl, listEl),
        convPane,
      ),
    );
    loadList();
    if (arg) loadConversation(convPane, arg);
    else convPane.append(h("p", { class: "empty" }, "Choose a conversation, or add a contact to start one."));
  }

  async function loadList() {
    let doc;
    const early = SMU.prefetched && SMU.prefetched["/api/conversations"];
    if (early) delete SMU.prefetched["/api/conversations"];
    try {
      doc = await (early || SMU.get("/api/conversations"));
    } catch (err) {
      return;
    }
    if (!listEl || !SMU.isCurrent("conversations")) return;
    const focused = document.activeElement && document.activeElement.dataset.account;
    SMU.clear(requestsEl);
    if (doc.requests.length) {
      requestsEl.append(
        h(
          "section",
          { class: "requests-box", "aria-label": "Message requests" },
          h("h2", {}, `Message requests (${doc.requests.length})`),
          h(
            "ul",
            { class: "conv-list" },
            doc.requests.map((r) =>
              row(r.account_id, r.name, r.last ? r.last.text : "", r.last ? r.last.sent_ms : 0, r.count, "request"),
            ),
          ),
        ),
      );
    }
    SMU.clear(listEl);
    if (!doc.conversations.length) {
      listEl.append(
        h(
          "li",
          { class: "empty" },
          "No contacts yet. ",
          h("button", { type: "button", class: "link", onclick: () => SMU.go("contacts") }, "Add a contact"),
        ),
      );
    }
    for (const c of doc.conversations) {
      const preview = c.last ? (c.last.outgoing ? "You: " : "") + c.last.text : "No messages yet";
      listEl.append(row(c.account_id, c.name, preview, c.last ? c.last.sent_ms : 0, c.unread, "unread", c.verified));
    }
    if (focused) {
      const again = listEl.parentNode.querySelector(`[data-account="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
    if (firstRender) {
      firstRender = false;
      performance.mark("smu-conversations");
    }
  }

  function row(account, name, preview, when, count, kind, verified) {
    const current = account === openId;
    const label = kind === "request" ? `${count} from ${name}` : `${count} unread`;
    return h(
      "li",
      {},
      h(
        "button",
        {
          type: "button",
          class: "conv" + (count && kind === "unread" ? " unread" : ""),
          "data-account": account,
          "aria-current": current ? "true" : null,
          onclick: () => SMU.go("conversations", account),
        },
        h("span", { class: "name" }, name, verified ? h("span", { class: "sr-only" }, " (verified)") : null),
        h("span", { class: "when" }, SMU.when(when)),
        h("span", { class: "preview" }, preview),
        count ? h("span", { class: "badge", "aria-label": label }, String(count)) : h("span"),
      ),
    );
  }

  function refreshListSoon() {
    window.clearTimeout(listTimer);
    listTimer = window.setTimeout(loadList, 120);
  }

  // -- one conversation -----------------------------------------------------------

  async function loadConversation(pane, account) {
    pane.append(h("p", { class: "loading" }, "Loading…"));
    let doc;
    try {
      doc = await SMU.get("/api/conversation", { account });
    } catch (err) {
      SMU.clear(pane).append(h("p", { class: "empty error" }, err.message));
      return;
    }
    if (!SMU.isCurrent("conversations", account)) return;
    SMU.clear(pane);
    messagesEl = h("ol", {
      class: "messages",
      role: "log",
      "aria-label": `Messages with ${doc.name}`,
      "aria-live": "polite",
    });
    newestIn = 0;
    for (const m of doc.messages) {
      messagesEl.append(message(m));
      if (!m.outgoing) newestIn = Math.max(newestIn, m.sent_ms);
    }
    pane.append(head(doc), messagesEl, doc.request ? requestBar(doc) : composer(doc));
    if (!doc.messages.length) messagesEl.append(h("li", { class: "empty", id: "no-messages" }, "No messages yet."));
    messagesEl.scrollTop = messagesEl.scrollHeight;
    markRead(account);
  }

  function head(doc) {
    const status = doc.verified
      ? h("span", { class: "pill ok" }, "✓ Verified")
      : h("span", { class: "pill" }, "Not verified");
    return h(
      "header",
      { class: "conv-head" },
      h("h2", {}, doc.name),
      doc.handle ? h("span", { class: "hint" }, doc.handle) : null,
      doc.request ? h("span", { class: "pill warn" }, "Not in your contacts") : status,
      doc.status !== "ok" && doc.status !== "unknown" ? h("span", { class: "pill bad" }, doc.status) : null,
      doc.request
        ? null
        : h(
            "button",
            { type: "button", class: "link", onclick: () => SMU.go("contacts", doc.account_id) },
            "Safety number and history",
          ),
    );
  }

  function message(m) {
    const meta = [SMU.when(m.sent_ms)];
    if (m.relayed_by) meta.push(`claims ${m.outgoing ? "you" : m.from} · ${m.from_device}`);
    else if (!m.outgoing) meta.push(`${m.from} · ${m.from_device}`);
    else if (m.from_device && m.from_device !== SMU.state.device?.name) meta.push(`from your ${m.from_device}`);
    // history whose sender this device could not check: whose claim it is (§15.4)
    const relayed = m.relayed_by
      ? h("span", { class: "pill warn relayed" }, `relayed by ${m.relayed_by}, unverified`)
      : null;
    return h(
      "li",
      { class: "msg " + (m.outgoing ? "out" : "in"), "data-message": m.message_id },
      h("span", { class: "sr-only" }, (m.relayed_by ? "Unverified, " : "") + (m.outgoing ? "You wrote: " : `${m.from} wrote: `)),
      h("div", { class: "bubble" }, m.text),
      h("div", { class: "meta" }, meta.join(" · "), relayed ? " " : null, relayed),
      m.outgoing ? deliveries(m.deliveries || []) : null,
      deleteButton(m),
    );
  }

  // To the account's trash: hidden on every device, restorable for 30 days.
  function deleteButton(m) {
    const button = h(
      "button",
      { type: "button", class: "link delete", "aria-label": "Delete this message" },
      "Delete",
    );
    button.addEventListener("click", async () => {
      try {
        await SMU.post("/api/messages/delete", { message_id: m.message_id });
        button.closest("li")?.remove();
        SMU.toast("Moved to the trash: restore it there within 30 days");
      } catch (err) {
        SMU.toast(err.message);
      }
    });
    return button;
  }

  function deliveries(list) {
    const el = h("div", { class: "deliveries" });
    if (!list.length) {
      el.append("not sent to any device");
      return el;
    }
    list.forEach((d, i) => {
      if (i) el.append(" · ");
      el.append(
        h("span", { class: d.state }, `${d.own_device ? "your " : ""}${d.device}: ${d.words}`),
      );
    });
    return el;
  }

  function composer(doc) {
    const err = h("p", { class: "error", role: "alert" });
    const box = h("textarea", {
      id: "compose",
      rows: "1",
      placeholder: SMU.deviceActive() ? `Message ${doc.name}` : "This device can no longer send",
      disabled: !SMU.deviceActive(),
      maxlength: "65536",
    });
    const send = h("button", { type: "submit", class: "primary", disabled: !SMU.deviceActive() }, "Send");
    const form = h(
      "form",
      { class: "composer", "aria-label": `Send a message to ${doc.name}` },
      h("label", { for: "compose", class: "sr-only" }, `Message to ${doc.name}`),
      box,
      send,
    );
    const submit = () => {
      const text = box.value;
      if (!text.trim()) return;
      SMU.busy(send, err, async () => {
        const sent = await SMU.post("/api/send", { account: doc.account_id, text });
        box.value = "";
        box.focus();
        SMU.announce("Message sent");
        return sent;
      });
    };
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      submit();
    });
    // Enter sends; Shift+Enter is a new line (as in Signal Desktop)
    box.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        submit();
      }
    });
    window.setTimeout(() => box.focus(), 0);
    return h("div", {}, form, err);
  }

  function requestBar(doc) {
    const err = h("p", { class: "error", role: "alert" });
    const accept = h("button", { type: "button", class: "primary" }, "Accept");
    const block = h("button", { type: "button", class: "danger" }, "Block");
    accept.addEventListener("click", () =>
      SMU.busy(accept, err, async () => {
        await SMU.post("/api/requests/accept", { account: doc.account_id });
        SMU.toast(`${doc.name} is now a contact`);
        SMU.go("conversations", doc.account_id);
      }),
    );
    block.addEventListener("click", () =>
      SMU.busy(block, err, async () => {
        await SMU.post("/api/requests/block", { account: doc.account_id });
        SMU.toast(`Blocked ${doc.name}`);
        SMU.go("conversations");
      }),
    );
    return h(
      "div",
      { class: "request-bar" },
      h("p", {}, `${doc.name} is not in your contacts. Accept to reply, or block to hear no more from them.`),
      h("div", { class: "row" }, accept, block),
      err,
    );
  }

  // Read up to the newest message shown, never past it: a message that
  // arrives meanwhile stays unread (on every device of the account).
  function markRead(account) {
    if (document.visibilityState !== "visible" || !newestIn) return;
    SMU.post("/api/read", { account, up_to_ms: newestIn }).catch(() => {});
  }

  // -- live -----------------------------------------------------------------------

  SMU.on("message", (m) => {
    if (!SMU.isCurrent("conversations")) return;
    if (messagesEl && m.conversation === openId && messagesEl.isConnected) {
      if (!messagesEl.querySelector(`[data-message="${CSS.escape(m.message_id)}"]`)) {
        const empty = messagesEl.querySelector("#no-messages");
        if (empty) empty.remove();
        messagesEl.append(message(m));
        SMU.metrics.shown[m.message_id] = Date.now();
        messagesEl.scrollTop = messagesEl.scrollHeight;
        if (!m.outgoing) {
          newestIn = Math.max(newestIn, m.sent_ms);
          markRead(openId);
        }
      }
    }
    refreshListSoon();
  });

  SMU.on("delivery", (event) => {
    if (!messagesEl || !messagesEl.isConnected) return;
    const li = messagesEl.querySelector(`[data-message="${CSS.escape(event.message_id)}"]`);
    if (!li) return;
    const old = li.querySelector(".deliveries");
    if (old) old.replaceWith(deliveries(event.deliveries));
  });

  for (const what of ["changed:conversations", "changed:contacts", "reconnected"]) {
    SMU.on(what, () => {
      if (SMU.isCurrent("conversations")) refreshListSoon();
    });
  }

  SMU.screens.conversations = { render };
})();
