// SMU web app, part 1: the launch and the session.
//
// `smu web` opens  /#launch=CODE&c=CHALLENGE&v=EXPECTED . Before anything is
// shown or sent, the code leaves the address bar and the history, and the
// server must answer the challenge with the value `smu web` computed from the
// node's web key (0600, readable by the node's user alone). Only a server
// that holds that key can; only then is the one-time code traded for a
// session: an HttpOnly cookie, plus a key this tab keeps in sessionStorage
// (per origin, port included) and sends with every request.
"use strict";

SMU.STORAGE_KEY = "smu-session-key";

SMU.launch = async function () {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const code = fragment.get("launch");
  if (code !== null) {
    // The code leaves the address bar and this history entry at once.
    window.history.replaceState(null, "", "/");
    return SMU.useLaunch(code, fragment.get("c"), fragment.get("v"));
  }
  SMU.key = window.sessionStorage.getItem(SMU.STORAGE_KEY);
  SMU.proven = window.sessionStorage.getItem(SMU.STORAGE_KEY + ":proven") === "1";
  if (!SMU.key) {
    SMU.signedOut();
    return false;
  }
  SMU.showProof();
  return true;
};

SMU.useLaunch = async function (code, challenge, expected) {
  const main = SMU.clear(SMU.$("main"));
  main.append(SMU.h("p", { class: "loading" }, "Checking that this page comes from your node…"));
  let answer = null;
  if (challenge && expected && /^[0-9a-f]{32,128}$/.test(challenge)) {
    try {
      answer = (await SMU.post("/api/proof", { challenge })).proof;
    } catch (err) {
      answer = null;
    }
  }
  if (answer === null || answer !== expected) {
    SMU.impostor();
    return false;
  }
  SMU.proven = true;
  let session;
  try {
    session = await SMU.post("/api/session", { code });
  } catch (err) {
    SMU.signedOut(err.message);
    return false;
  }
  SMU.key = session.key;
  window.sessionStorage.setItem(SMU.STORAGE_KEY, session.key);
  window.sessionStorage.setItem(SMU.STORAGE_KEY + ":proven", "1");
  SMU.showProof();
  return true;
};

SMU.showProof = function () {
  const el = SMU.$("proof");
  if (SMU.proven) {
    el.className = "proof ok";
    el.textContent = "✓ Your node (it proved it holds this node's web key)";
  } else {
    el.className = "proof";
    el.textContent = "";
  }
};

SMU.impostor = function () {
  const el = SMU.$("proof");
  el.className = "proof bad";
  el.textContent = "Not your node";
  SMU.$("nav").hidden = true;
  const main = SMU.clear(SMU.$("main"));
  main.append(
    SMU.h(
      "div",
      { class: "card", role: "alert" },
      SMU.h("h1", {}, "This page is not from your node"),
      SMU.h(
        "p",
        {},
        "The server at this address could not prove that it holds your node's web key. " +
          "Another program may be using the port. Do not type anything here.",
      ),
      SMU.h("p", {}, "Close this tab and run ", SMU.h("code", {}, "smu web"), " again."),
    ),
  );
};

SMU.signedOut = function (why) {
  SMU.key = null;
  window.sessionStorage.removeItem(SMU.STORAGE_KEY);
  if (SMU.live) SMU.live.stop();
  SMU.$("nav").hidden = true;
  SMU.$("banner").hidden = true;
  SMU.closeDialog();
  const main = SMU.clear(SMU.$("main"));
  main.append(
    SMU.h(
      "div",
      { class: "card" },
      SMU.h("h1", { tabindex: "-1" }, "Open SMU from your terminal"),
      why ? SMU.h("p", { class: "error" }, why) : null,
      SMU.h(
        "p",
        {},
        "For your safety this page works only with a one-time address. Run ",
        SMU.h("code", {}, "smu web"),
        " on this computer: it opens the app, or prints an address to open.",
      ),
    ),
  );
};

SMU.logout = async function () {
  try {
    await SMU.post("/api/logout");
  } catch (err) {
    // signed out either way
  }
  SMU.signedOut("You signed out.");
};
