// SMU web app, part 3: the first run. A node without an account offers to
// create one, to join an existing one (a link from another device), or to
// recover one with its recovery key; a new user never needs the terminal.
"use strict";

(function () {
  const { h } = SMU;

  function render(main) {
    const node = SMU.state.node;
    main.append(
      h("h1", {}, "Welcome to SMU"),
      h(
        "p",
        {},
        `This device is called “${node.device_name}” (fingerprint `,
        h("code", {}, node.fingerprint),
        "). It does not belong to an account yet.",
      ),
      h(
        "div",
        { class: "cards" },
        card("Create a new account", "Start fresh: you will get a recovery key to write down.", "Create account", create),
        card(
          "Join an existing account",
          "You already use SMU on another device: it shows a link to paste here.",
          "Join with a link",
          join,
        ),
        card(
          "Recover an account",
          "Every device is lost: use the recovery key you wrote down.",
          "Recover with the key",
          recover,
        ),
      ),
    );
  }

  function card(title, text, action, open) {
    return h(
      "section",
      { class: "card", "aria-label": title },
      h("h2", {}, title),
      h("p", { class: "hint" }, text),
      h("button", { type: "button", class: "primary", onclick: () => open(SMU.clear(SMU.$("main"))) }, action),
    );
  }

  function back() {
    return h("button", { type: "button", class: "link", onclick: () => SMU.route() }, "← Back");
  }

  function field(id, label, attrs) {
    return [h("label", { for: id }, label), h(attrs.rows ? "textarea" : "input", { id, ...attrs })];
  }

  // -- create -------------------------------------------------------------------

  function create(main) {
    const err = h("p", { class: "error", role: "alert" });
    const submit = h("button", { type: "submit", class: "primary" }, "Create account");
    const form = h(
      "form",
      { class: "card stack", "aria-labelledby": "create-title" },
      field("create-name", "Your name, as people will see it", {
        autocomplete: "nickname",
        maxlength: "64",
        required: true,
        autofocus: true,
      }),
      h("p", { class: "hint" }, "Creating the account takes a few seconds of work on this computer."),
      h("div", { class: "row" }, submit),
      err,
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const name = form.querySelector("#create-name").value.trim();
      submit.textContent = "Creating…";
      SMU.busy(submit, err, async () => {
        const done = await SMU.post("/api/account/create", { name });
        recoveryKey(SMU.clear(main), done.recovery_key, `Your account ${done.handle} is ready.`);
      }).finally(() => (submit.textContent = "Create account"));
    });
    main.append(back(), h("h1", { id: "create-title" }, "Create an account"), form);
    form.querySelector("input").focus();
  }

  // The recovery key, once: the user says it is written down before going on.
  function recoveryKey(main, key, headline) {
    const box = h("input", { type: "checkbox", id: "written" });
    const go = h("button", { type: "button", class: "primary", disabled: true }, "Continue");
    box.addEventListener("change", () => (go.disabled = !box.checked));
    SMU.hold = true;
    go.addEventListener("click", async () => {
      SMU.hold = false;
      await SMU.refreshState();
      SMU.go("conversations");
    });
    main.append(
      h("h1", {}, "Write down your recovery key"),
      h("p", {}, headline),
      h(
        "div",
        { class: "card stack" },
        h(
          "p",
          {},
          "This key is the only way back into your account if you lose every device. It is shown ",
          h("strong", {}, "only this once"),
          ": write it on paper and keep it somewhere safe, away from this computer.",
        ),
        h("p", { class: "secret", id: "recovery-key", "aria-label": "Recovery key" }, key),
        h("label", { class: "inline", for: "written" }, box, "I have written it down and will keep it safe"),
        h("div", { class: "row" }, go),
      ),
    );
  }

  // -- join ---------------------------------------------------------------------

  function join(main) {
    const err = h("p", { class: "error", role: "alert" });
    const submit = h("button", { type: "submit", class: "primary" }, "Continue");
    const form = h(
      "form",
      { class: "card stack" },
      h(
        "p",
        { class: "hint" },
        "On your other device open This account → Link a new device, and paste the link it shows here.",
      ),
      field("join-link", "Link from your other device", { rows: "3", required: true, spellcheck: "false" }),
      field("join-name", "A name for this device", { value: SMU.state.node.device_name, maxlength: "64" }),
      h("div", { class: "row" }, submit),
      err,
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const link = form.querySelector("#join-link").value.trim();
      const name = form.querySelector("#join-name").value.trim();
      SMU.busy(submit, err, async () => {
        const started = await SMU.post("/api/devices/join", { link, name });
        confirmJoin(SMU.clear(main), started);
      });
    });
    main.append(back(), h("h1", {}, "Join an existing account"), form);
    form.querySelector("textarea").focus();
  }

  function confirmJoin(main, started) {
    const acct = started.account;
    const err = h("p", { class: "error", role: "alert" });
    const yes = h("button", { type: "button", class: "primary" }, "Yes, join");
    const no = h("button", { type: "button" }, "Cancel");
    const waiting = h("p", { role: "status" });
    const answer = (accept) =>
      SMU.busy(yes, err, async () => {
        no.disabled = true;
        if (accept) waiting.textContent = "Waiting for your other device to approve…";
        try {
          const done = await SMU.post("/api/devices/join_confirm", { join_id: started.join_id, accept });
          if (!done.joined) return SMU.route();
          waiting.textContent = "";
          await SMU.refreshState();
          SMU.toast(`This device is now part of ${done.account.handle}`);
          SMU.go("conversations");
        } finally {
          no.disabled = false;
          if (waiting.textContent) waiting.textContent = "";
        }
      });
    yes.addEventListener("click", () => answer(true));
    no.addEventListener("click", () => answer(false));
    main.append(
      h("h1", {}, "Is this your account?"),
      h(
        "div",
        { class: "card stack" },
        h("p", {}, "You are joining ", h("strong", {}, acct.handle), ` (${acct.status}) as “${started.device_name}”.`),
        h("p", {}, "Its devices now:"),
        h("ul", {}, acct.devices.map((d) => h("li", {}, d.name, " ", h("code", {}, d.fingerprint)))),
        h("p", {}, "Confirmation code:"),
        h("p", { class: "bigcode", id: "join-code", "aria-label": "Confirmation code" }, spaced(started.code)),
        h("p", {}, "Your other device shows a code too. Join only if both codes are the same."),
        h("div", { class: "row" }, yes, no),
        waiting,
        err,
      ),
    );
    yes.focus();
  }

  // -- recover ------------------------------------------------------------------

  function recover(main) {
    const err = h("p", { class: "error", role: "alert" });
    const submit = h("button", { type: "submit", class: "primary" }, "Recover");
    const form = h(
      "form",
      { class: "card stack" },
      h(
        "p",
        { class: "hint" },
        "This device becomes the account's only device; every other device stops working. " +
          "This node must already hold the account's history (connect it to the network first).",
      ),
      field("recover-account", "Account id or handle", { required: true, spellcheck: "false" }),
      field("recover-key", "Recovery key", { rows: "2", required: true, spellcheck: "false", autocomplete: "off" }),
      h("div", { class: "row" }, submit),
      err,
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const account = form.querySelector("#recover-account").value.trim();
      const key = form.querySelector("#recover-key").value.trim();
      submit.textContent = "Recovering…";
      SMU.busy(submit, err, async () => {
        const done = await SMU.post("/api/account/recover", { account, recovery_key: key });
        recoveryKey(
          SMU.clear(main),
          done.recovery_key,
          `You recovered ${done.account.handle}. The old recovery key no longer works: here is the new one.`,
        );
      }).finally(() => (submit.textContent = "Recover"));
    });
    main.append(back(), h("h1", {}, "Recover an account"), form);
    form.querySelector("input").focus();
  }

  function spaced(code) {
    return code.length === 6 ? code.slice(0, 3) + " " + code.slice(3) : code;
  }

  SMU.spacedCode = spaced;
  SMU.screens.setup = { render };
})();
