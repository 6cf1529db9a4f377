// SMU web app, part 4b: the account's trash. Deleted messages are hidden on
// every device of the account and purged 30 days after deletion; until then
// any device can bring them back (PROTOCOL.md §15.19).
"use strict";

(function () {
  const { h } = SMU;
  let listEl = null; // while this screen is shown

  function render(main) {
    listEl = h("div", {}, h("p", { class: "loading" }, "Loading…"));
    main.append(
      h("h1", {}, "Trash"),
      h(
        "p",
        { class: "hint" },
        "Deleted messages are hidden on all your devices and purged 30 days after they were deleted. Until then you can restore them.",
      ),
      h("section", { class: "card", "aria-label": "Deleted messages" }, listEl),
    );
    load();
  }

  async function load() {
    let doc;
    try {
      doc = await SMU.get("/api/trash");
    } catch (err) {
      if (listEl) SMU.clear(listEl).append(h("p", { class: "error" }, err.message));
      return;
    }
    if (!listEl || !SMU.isCurrent("trash")) return;
    SMU.clear(listEl);
    if (!doc.trash.length) {
      listEl.append(h("p", { class: "empty" }, "The trash is empty."));
      return;
    }
    listEl.append(h("ul", { class: "trash-list" }, doc.trash.map(item)));
  }

  function item(t) {
    const restore = h(
      "button",
      { type: "button", class: "restore", "aria-label": `Restore the message from ${t.from}` },
      "Restore",
    );
    restore.addEventListener("click", async () => {
      restore.disabled = true;
      try {
        await SMU.post("/api/messages/restore", { message_id: t.message_id });
        restore.closest("li")?.remove();
        SMU.toast("Restored: it shows again on all your devices");
        load();
      } catch (err) {
        restore.disabled = false;
        SMU.toast(err.message);
      }
    });
    return h(
      "li",
      { class: "trash-item", "data-message": t.message_id },
      h("div", { class: "from" }, `From ${t.from}`),
      h("div", { class: "bubble" }, t.text === null ? "(not on this device)" : t.text),
      h("div", { class: "meta" }, `deleted ${SMU.when(t.deleted_ms)} · purged ${SMU.when(t.purge_ms)}`),
      restore,
    );
  }

  for (const what of ["changed:conversations", "reconnected"]) {
    SMU.on(what, () => {
      if (SMU.isCurrent("trash")) load();
    });
  }

  SMU.screens.trash = { render };
})();
