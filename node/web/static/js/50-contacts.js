// SMU web app, part 5: contacts. Your invite (text and QR), adding a contact
// by invite, the list, and one contact: the safety number beside the number
// the contact reads out, the verified mark, what changed since you looked,
// and the contact's account history in words.
"use strict";

(function () {
  const { h } = SMU;

  function render(main, arg) {
    if (arg) return renderContact(main, arg);
    const list = h("div", {}, h("p", { class: "loading" }, "Loading…"));
    main.append(h("h1", {}, "Contacts"), inviteCard(), addCard(), h("section", { class: "card", "aria-labelledby": "list-title" }, h("h2", { id: "list-title" }, "Your contacts"), list));
    loadList(list);
  }

  function inviteCard() {
    const body = h("div", { class: "invite" }, h("p", { class: "loading" }, "Loading…"));
    SMU.get("/api/invite")
      .then((doc) => {
        SMU.clear(body).append(
          SMU.qr(doc.qr, `QR code of your invite, ${doc.handle}`),
          h(
            "div",
            { class: "text stack" },
            h("p", {}, "Give this invite to people so they can add you (", h("strong", {}, doc.handle), "):"),
            h("textarea", {
              id: "invite-text",
              readonly: true,
              rows: "3",
              "aria-label": "Your invite",
              spellcheck: "false",
            }),
            h("div", { class: "row" }, SMU.copyButton(() => doc.invite, "Copy invite")),
            h("p", { class: "hint" }, "An invite is not secret: it says who you are and where your node is."),
          ),
        );
        body.querySelector("#invite-text").value = doc.invite;
      })
      .catch((err) => SMU.clear(body).append(h("p", { class: "error" }, err.message)));
    return h("section", { class: "card", "aria-labelledby": "invite-title" }, h("h2", { id: "invite-title" }, "Your invite"), body);
  }

  function addCard() {
    const err = h("p", { class: "error", role: "alert" });
    const submit = h("button", { type: "submit", class: "primary" }, "Add contact");
    const form = h(
      "form",
      { class: "stack" },
      h("label", { for: "add-ref" }, "Their invite"),
      h("textarea", { id: "add-ref", rows: "2", required: true, spellcheck: "false", placeholder: "smu1inv…" }),
      h("label", { for: "add-name" }, "Name (optional)"),
      h("input", { id: "add-name", maxlength: "64", placeholder: "the name they chose" }),
      h("div", { class: "row" }, submit),
      err,
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const ref = form.querySelector("#add-ref").value.trim();
      const name = form.querySelector("#add-name").value.trim();
      SMU.busy(submit, err, async () => {
        const done = await SMU.post("/api/contacts/add", { ref, name });
        SMU.toast(`Added ${done.name}`);
        SMU.go("contacts", done.account_id);
      });
    });
    return h("section", { class: "card", "aria-labelledby": "add-title" }, h("h2", { id: "add-title" }, "Add a contact"), form);
  }

  async function loadList(el) {
    let doc;
    try {
      doc = await SMU.get("/api/contacts");
    } catch (err) {
      SMU.clear(el).append(h("p", { class: "error" }, err.message));
      return;
    }
    SMU.clear(el);
    if (!doc.contacts.length) {
      el.append(h("p", { class: "empty" }, "No contacts yet: paste someone's invite above."));
      return;
    }
    el.append(
      h(
        "ul",
        { class: "contact-list" },
        doc.contacts.map((c) =>
          h(
            "li",
            {},
            h(
              "button",
              { type: "button", class: "contact-row", onclick: () => SMU.go("contacts", c.account_id) },
              h("span", { class: "name" }, c.name),
              h("span", { class: "handle" }, c.handle || "(its history has not arrived yet)"),
              h("span", { class: "pill " + (c.verified ? "ok" : "") }, c.verified ? "✓ Verified" : "Not verified"),
              c.status !== "ok" && c.status !== "unknown" ? h("span", { class: "pill bad" }, c.status) : null,
              c.blocked ? h("span", { class: "pill bad" }, "Blocked") : null,
              c.changes.length ? h("span", { class: "pill warn" }, SMU.plural(c.changes.length, "change")) : null,
            ),
          ),
        ),
      ),
    );
  }

  // -- one contact ----------------------------------------------------------------

  async function renderContact(main, account) {
    main.append(h("p", { class: "loading" }, "Loading…"));
    let doc;
    try {
      doc = await SMU.get("/api/contact", { account });
    } catch (err) {
      SMU.clear(main).append(h("h1", {}, "Contact"), h("p", { class: "error" }, err.message));
      return;
    }
    if (!SMU.isCurrent("contacts", account)) return;
    const c = doc.contact;
    SMU.clear(main).append(
      h("button", { type: "button", class: "link", onclick: () => SMU.go("contacts") }, "← All contacts"),
      h("h1", {}, c.name),
      h(
        "p",
        { class: "row" },
        h("span", { class: "hint" }, c.handle || "history not here yet"),
        h("span", { class: "pill " + (c.verified ? "ok" : "") }, c.verified ? "✓ Verified" : "Not verified"),
        c.status !== "ok" && c.status !== "unknown" ? h("span", { class: "pill bad" }, c.status) : null,
        c.blocked ? h("span", { class: "pill bad" }, "Blocked") : null,
        c.blocked
          ? null
          : h("button", { type: "button", onclick: () => SMU.go("conversations", c.account_id) }, "Message"),
      ),
      c.verified_by ? markedBy(c) : null,
      safetyCard(doc),
      changesCard(c),
      historyCard(doc.history),
      manageCard(c),
    );
    const heading = main.querySelector("h1");
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }

  function groups(number) {
    return number.split(/\s+/).filter(Boolean);
  }

  function safetyCard(doc) {
    const c = doc.contact;
    const mine = groups(doc.safety_number);
    const shown = h(
      "div",
      { class: "numbers", id: "safety-mine", "aria-label": "Your safety number" },
      mine.map((g) => h("span", {}, g)),
    );
    const theirs = h("textarea", {
      id: "safety-theirs",
      rows: "3",
      spellcheck: "false",
      inputmode: "numeric",
      placeholder: "Type or paste the 60 digits your contact sees",
    });
    const verdict = h("p", { role: "status", id: "safety-verdict" });
    theirs.addEventListener("input", () => {
      const typed = theirs.value.replace(/\D/g, "").match(/.{1,5}/g) || [];
      let same = 0;
      shown.querySelectorAll("span").forEach((el, i) => {
        el.className = typed[i] === undefined ? "" : typed[i] === mine[i] ? "match" : "differs";
        if (typed[i] === mine[i]) same++;
      });
      if (!typed.length) verdict.textContent = "";
      else if (same === mine.length && typed.length === mine.length) verdict.textContent = "✓ The numbers match.";
      else verdict.textContent = `${same} of ${mine.length} groups match so far.`;
    });
    const err = h("p", { class: "error", role: "alert" });
    const verify = h("button", { type: "button", class: "primary" }, c.verified ? "Verified" : "Mark as verified");
    verify.disabled = !!c.verified || !c.synced;
    verify.addEventListener("click", () => confirmVerify(c, doc.safety_number, err));
    return h(
      "section",
      { class: "card stack", "aria-labelledby": "safety-title" },
      h("h2", { id: "safety-title" }, `Safety number with ${c.name}`),
      h(
        "p",
        { class: "hint" },
        `Compare it with ${c.name} in person or on a call. It covers both accounts, so it stays the same ` +
          "when either of you adds or removes a device; it changes only if an account is recovered.",
      ),
      h(
        "div",
        { class: "safety" },
        h("div", {}, h("h3", {}, `You (${doc.own_handle})`), shown),
        h("div", {}, h("h3", {}, h("label", { for: "safety-theirs" }, `What ${c.name} sees`)), theirs, verdict),
      ),
      h("div", { class: "row" }, verify),
      err,
    );
  }

  function confirmVerify(c, number, err) {
    const yes = h("button", { type: "button", class: "primary" }, "Yes, they match");
    const no = h("button", { type: "button", onclick: SMU.closeDialog }, "Cancel");
    yes.addEventListener("click", () =>
      SMU.busy(yes, err, async () => {
        SMU.closeDialog();
        await SMU.post("/api/contacts/verify", { account: c.account_id, safety_number: number });
        SMU.toast(`${c.name} is verified`);
        SMU.go("contacts", c.account_id);
      }),
    );
    SMU.dialog(
      `Mark ${c.name} as verified?`,
      h("p", {}, `Only if you compared the whole number with ${c.name} and every group is the same.`),
      h("div", { class: "row end" }, no, yes),
    );
  }

  // Which of your devices compared the number (a mark is account-wide).
  function markedBy(c) {
    const by = c.verified_by;
    const revoked = by.status !== "active";
    return h(
      "p",
      { class: "hint", id: "verified-by" },
      `Verified on your device “${by.device}”` + (revoked ? ` (now ${by.status})` : "") + ".",
    );
  }

  // Block or unblock, and remove: on every device of this account.
  function manageCard(c) {
    const err = h("p", { class: "error", role: "alert" });
    const block = h("button", { type: "button", class: c.blocked ? "" : "danger", id: "contact-block" }, c.blocked ? "Unblock" : "Block");
    const remove = h("button", { type: "button", class: "danger", id: "contact-remove" }, "Remove contact");
    block.addEventListener("click", () => {
      if (c.blocked) {
        SMU.busy(block, err, async () => {
          await SMU.post("/api/contacts/block", { account: c.account_id, unblock: true });
          SMU.toast(`Unblocked ${c.name}`);
          SMU.go("contacts", c.account_id);
        });
        return;
      }
      confirmThen(
        `Block ${c.name}?`,
        "Their messages are dropped on every one of your devices, and they get no receipts.",
        "Block",
        block,
        err,
        async () => {
          await SMU.post("/api/contacts/block", { account: c.account_id });
          SMU.toast(`Blocked ${c.name}`);
          SMU.go("contacts", c.account_id);
        },
      );
    });
    remove.addEventListener("click", () =>
      confirmThen(
        `Remove ${c.name}?`,
        "They leave your contacts on every one of your devices. Your conversation stays; " +
          "a new message from them arrives as a request.",
        "Remove",
        remove,
        err,
        async () => {
          await SMU.post("/api/contacts/remove", { account: c.account_id });
          SMU.toast(`Removed ${c.name}`);
          SMU.go("contacts");
        },
      ),
    );
    return h(
      "section",
      { class: "card", "aria-labelledby": "manage-title" },
      h("h2", { id: "manage-title" }, "Manage"),
      h("div", { class: "row" }, block, c.blocked ? null : remove),
      err,
    );
  }

  function confirmThen(title, text, label, button, err, action) {
    const yes = h("button", { type: "button", class: "danger" }, label);
    const no = h("button", { type: "button", onclick: SMU.closeDialog }, "Cancel");
    yes.addEventListener("click", () => {
      SMU.closeDialog();
      SMU.busy(button, err, action);
    });
    SMU.dialog(title, h("p", {}, text), h("div", { class: "row end" }, no, yes));
  }

  function changesCard(c) {
    const err = h("p", { class: "error", role: "alert" });
    const seen = h("button", { type: "button" }, "Mark as seen");
    seen.addEventListener("click", () =>
      SMU.busy(seen, err, async () => {
        await SMU.post("/api/contacts/ack", { account: c.account_id });
        SMU.go("contacts", c.account_id);
      }),
    );
    return h(
      "section",
      { class: "card", "aria-labelledby": "changes-title" },
      h("h2", { id: "changes-title" }, "What changed since you last looked"),
      c.changes.length
        ? [h("ul", { class: "changes" }, c.changes.map((x) => h("li", {}, x))), h("div", { class: "row" }, seen), err]
        : h("p", { class: "hint" }, "Nothing: their devices are as you last saw them."),
    );
  }

  function historyCard(events) {
    return h(
      "section",
      { class: "card", "aria-labelledby": "history-title" },
      h("h2", { id: "history-title" }, "Their account's history"),
      events.length
        ? SMU.historyList(events)
        : h("p", { class: "hint" }, "Not here yet: it arrives from the network."),
    );
  }

  // Also used for this account's own history.
  SMU.historyList = function (events) {
    return h(
      "ol",
      { class: "history" },
      events.map((e) =>
        h(
          "li",
          {},
          h("span", { class: "when" }, SMU.when(e.timestamp_ms)),
          h("span", {}, e.text),
          e.void ? h("div", { class: "void" }, "Void: " + e.void) : null,
        ),
      ),
    );
  };

  SMU.on("changed:contacts", () => {
    if (SMU.isCurrent("contacts") && !document.activeElement?.matches("input, textarea")) {
      SMU.route(false);
    }
  });

  SMU.screens.contacts = { render };
})();
