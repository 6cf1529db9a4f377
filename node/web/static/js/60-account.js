// SMU web app, part 6: this account. Its devices and who approved each,
// linking a new device (the link as text and QR, then the approval prompt:
// name, fingerprint, and the code both devices show, which the user must
// pick), revoking (offering the devices the revoked one added), the
// account's history, and the browsers signed in to this app.
"use strict";

(function () {
  const { h } = SMU;
  const prompted = new Set(); // link requests whose prompt was shown

  function render(main) {
    const body = h("div", {}, h("p", { class: "loading" }, "Loading…"));
    main.append(h("h1", {}, "This account"), body);
    load(body);
  }

  async function load(body) {
    let doc;
    try {
      doc = await SMU.get("/api/account");
    } catch (err) {
      SMU.clear(body).append(h("p", { class: "error" }, err.message));
      return;
    }
    if (!SMU.isCurrent("account")) return;
    const active = doc.devices.filter((d) => d.status === "active").length;
    SMU.clear(body).append(
      h(
        "section",
        { class: "card", "aria-labelledby": "acct-title" },
        h("h2", { id: "acct-title" }, doc.handle),
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Display name"),
          h("dd", {}, doc.display_name),
          h("dt", {}, "Account id"),
          h("dd", { class: "mono" }, doc.account_id),
          h("dt", {}, "Status"),
          h("dd", {}, doc.status),
          h("dt", {}, "Active devices"),
          h("dd", {}, String(active)),
        ),
      ),
      devicesCard(doc),
      h(
        "section",
        { class: "card", "aria-labelledby": "hist-title" },
        h("h2", { id: "hist-title" }, "History of this account"),
        SMU.historyList(doc.history),
      ),
      sessionsCard(),
    );
  }

  function devicesCard(doc) {
    const linkButton = h(
      "button",
      { type: "button", class: "primary", disabled: !SMU.deviceActive(), onclick: startLink },
      "Link a new device",
    );
    const rows = doc.devices.map((d) =>
      h(
        "tr",
        { "data-fingerprint": d.fingerprint },
        h("td", {}, h("strong", {}, d.name), d.this_device ? h("span", { class: "pill" }, "this device") : null),
        h("td", { class: "mono" }, d.fingerprint),
        h("td", {}, h("span", { class: "pill " + (d.status === "active" ? "ok" : "bad") }, d.status.replaceAll("_", " "))),
        h("td", {}, d.approved_by),
        h("td", {}, SMU.when(d.added_at_ms)),
        h(
          "td",
          {},
          d.status === "active" && SMU.deviceActive()
            ? h(
                "button",
                { type: "button", "aria-label": `Revoke ${d.name}`, onclick: () => confirmRevoke(d, doc) },
                "Revoke",
              )
            : null,
        ),
      ),
    );
    return h(
      "section",
      { class: "card", "aria-labelledby": "dev-title" },
      h("div", { class: "row" }, h("h2", { id: "dev-title" }, "Devices"), h("span", { class: "grow" }), linkButton),
      h(
        "table",
        {},
        h("caption", { class: "sr-only" }, "Devices of this account"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Device", "Fingerprint", "Status", "Approved by", "Added", ""].map((t) => h("th", { scope: "col" }, t)),
          ),
        ),
        h("tbody", {}, rows),
      ),
    );
  }

  // -- linking: the link, then the approval prompt ----------------------------------

  async function startLink() {
    let doc;
    try {
      doc = await SMU.post("/api/devices/link");
    } catch (err) {
      SMU.toast(err.message);
      return;
    }
    const until = new Date(doc.expires_at_ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const text = h("textarea", { id: "link-text", readonly: true, rows: "3", spellcheck: "false", "aria-label": "Link for the new device" });
    text.value = doc.link;
    SMU.dialog(
      "Link a new device",
      h(
        "p",
        {},
        "On the new device open SMU, choose “Join an existing account”, and paste this link or scan the code.",
      ),
      h("div", { class: "invite" }, SMU.qr(doc.qr, "QR code of the link for the new device"), h("div", { class: "text stack" }, text, h("div", { class: "row" }, SMU.copyButton(() => doc.link, "Copy link")))),
      h("p", { class: "hint" }, `Works once, until ${until}. Anyone holding it can ask to join: give it only to your new device.`),
      h("p", { role: "status", id: "link-status" }, "Waiting for the new device…"),
      h("div", { class: "row end" }, h("button", { type: "button", onclick: SMU.closeDialog }, "Close")),
    );
  }

  async function checkPending() {
    let doc;
    try {
      doc = await SMU.get("/api/devices/pending");
    } catch (err) {
      return;
    }
    for (const r of doc.requests) {
      if (r.awaiting_approval && r.choices && !prompted.has(r.id)) {
        prompted.add(r.id);
        approvalPrompt(r);
        return;
      }
    }
  }

  function approvalPrompt(r) {
    const err = h("p", { class: "error", role: "alert" });
    const typed = h("input", { id: "code-typed", inputmode: "numeric", autocomplete: "off", maxlength: "7" });
    const choices = h(
      "fieldset",
      { class: "choices" },
      h("legend", {}, "Which code does the new device show?"),
      r.choices.map((c, i) =>
        h(
          "label",
          { for: `code-${i}` },
          h("input", { type: "radio", name: "code", id: `code-${i}`, value: c }),
          SMU.spacedCode(c),
        ),
      ),
    );
    const approve = h("button", { type: "button", class: "primary" }, "Approve");
    const reject = h("button", { type: "button" }, "Reject");
    const picked = () => {
      const radio = choices.querySelector("input:checked");
      return (radio ? radio.value : typed.value).replace(/\s/g, "");
    };
    approve.addEventListener("click", () => {
      const code = picked();
      if (!/^\d{6}$/.test(code)) {
        err.textContent = "Pick the code the new device shows, or type it.";
        return;
      }
      SMU.busy(approve, err, async () => {
        reject.disabled = true;
        try {
          const done = await SMU.post("/api/devices/approve", { id: r.id, code });
          SMU.closeDialog();
          SMU.toast(`Approved ${done.device_name}`);
          SMU.announce(`Approved ${done.device_name}`);
          if (SMU.isCurrent("account")) SMU.route(false);
        } catch (e) {
          if (e.status === 403) {
            approve.hidden = true;
            reject.textContent = "Close";
            reject.onclick = SMU.closeDialog;
          }
          throw e;
        } finally {
          reject.disabled = false;
        }
      });
    });
    reject.addEventListener("click", () =>
      SMU.busy(reject, err, async () => {
        if (approve.hidden) return;
        await SMU.post("/api/devices/reject", { id: r.id });
        SMU.closeDialog();
        SMU.toast("Rejected");
      }),
    );
    SMU.dialog(
      "Approve a new device?",
      h("p", {}, "A device asks to join your account. Approve it only if you are holding it now."),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Name"),
        h("dd", { id: "approve-name" }, r.device_name),
        h("dt", {}, "Fingerprint"),
        h("dd", { class: "mono", id: "approve-fingerprint" }, r.fingerprint),
      ),
      choices,
      h("label", { for: "code-typed" }, "…or type it"),
      typed,
      h("div", { class: "row end" }, reject, approve),
      err,
    );
    choices.querySelector("input").focus();
  }

  // -- revoking -------------------------------------------------------------------

  function confirmRevoke(d, doc) {
    const err = h("p", { class: "error", role: "alert" });
    const active = doc.devices.filter((x) => x.status === "active");
    const alsoBox = h("input", { type: "checkbox", id: "revoke-cascade", checked: true });
    const lastBox = h("input", { type: "checkbox", id: "revoke-last" });
    const willRemain = active.length - 1 - (d.added.length || 0);
    const yes = h("button", { type: "button", class: "danger" }, "Revoke");
    const no = h("button", { type: "button", onclick: SMU.closeDialog }, "Cancel");
    yes.addEventListener("click", () =>
      SMU.busy(yes, err, async () => {
        const done = await SMU.post("/api/devices/revoke", {
          fingerprint: d.fingerprint,
          cascade: d.added.length > 0 && alsoBox.checked,
          confirm_last: lastBox.checked,
        });
        SMU.closeDialog();
        SMU.toast("Revoked " + done.revoked.map((x) => x.device).join(", "));
        SMU.route(false);
      }),
    );
    SMU.dialog(
      `Revoke “${d.name}”?`,
      h(
        "p",
        {},
        `${d.name} (${d.fingerprint}) will no longer read new messages or act for the account. ` +
          "Your contacts are told. This cannot be undone.",
      ),
      d.added.length
        ? h(
            "label",
            { class: "inline", for: "revoke-cascade" },
            alsoBox,
            `Also revoke the ${SMU.plural(d.added.length, "device")} it added: ${d.added.map((x) => x.name).join(", ")}`,
          )
        : null,
      willRemain <= 0
        ? h(
            "label",
            { class: "inline", for: "revoke-last" },
            lastBox,
            "I understand: no device will be left, only the recovery key can act for the account afterwards",
          )
        : null,
      h("div", { class: "row end" }, no, yes),
      err,
    );
  }

  // -- this app's sessions ------------------------------------------------------------

  function sessionsCard() {
    const list = h("div", {}, h("p", { class: "loading" }, "Loading…"));
    SMU.get("/api/sessions")
      .then((doc) => {
        SMU.clear(list).append(
          h(
            "table",
            {},
            h("caption", { class: "sr-only" }, "Browsers signed in"),
            h("thead", {}, h("tr", {}, ["Browser", "Signed in", "Last seen", "Ends", ""].map((t) => h("th", { scope: "col" }, t)))),
            h(
              "tbody",
              {},
              doc.sessions.map((s) =>
                h(
                  "tr",
                  {},
                  h("td", {}, s.browser, s.current ? h("span", { class: "pill" }, "this tab") : null),
                  h("td", {}, SMU.when(s.created_ms)),
                  h("td", {}, SMU.when(s.last_seen_ms)),
                  h("td", {}, SMU.when(s.expires_ms)),
                  h(
                    "td",
                    {},
                    s.current
                      ? h("button", { type: "button", onclick: SMU.logout }, "Sign out")
                      : h("button", { type: "button", onclick: () => endSession(s.id) }, "End session"),
                  ),
                ),
              ),
            ),
          ),
        );
      })
      .catch((err) => SMU.clear(list).append(h("p", { class: "error" }, err.message)));
    return h(
      "section",
      { class: "card", "aria-labelledby": "sess-title" },
      h("h2", { id: "sess-title" }, "Browsers signed in to this app"),
      list,
    );
  }

  async function endSession(id) {
    try {
      await SMU.post("/api/sessions/revoke", { id });
      SMU.route(false);
    } catch (err) {
      SMU.toast(err.message);
    }
  }

  SMU.on("pending", checkPending);
  SMU.on("changed:pending", checkPending);
  SMU.on("changed:account", () => {
    if (SMU.isCurrent("account") && !SMU.$("dialog").open) SMU.route(false);
  });

  SMU.screens.account = { render };
})();
