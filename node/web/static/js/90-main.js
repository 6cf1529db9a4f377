// SMU web app, last part: start. The launch (proof, then session), the first
// look at the node, the live connection, then the screen the address names.
"use strict";

(async function boot() {
  SMU.buildNav();
  if (!(await SMU.launch())) return;
  // the first screen's list is fetched beside the state, not after it
  if (/^(#\/?(conversations(\/.*)?)?)?$/.test(window.location.hash)) {
    SMU.prefetched = { "/api/conversations": SMU.get("/api/conversations") };
    SMU.prefetched["/api/conversations"].catch(() => {});
  }
  try {
    await SMU.refreshState();
  } catch (err) {
    if (err.status !== 401) {
      SMU.clear(SMU.$("main")).append(SMU.h("p", { class: "error", role: "alert" }, err.message));
    }
    return;
  }
  SMU.connectLive();
  window.addEventListener("hashchange", () => SMU.route());
  SMU.route(false);
})();
