// ZeroPay pages: the device key, DPoP proofs, WebAuthn and the API calls, in one module.
//
// The device key is a WebCrypto ECDSA P-256 key made non-extractable: script can sign with it
// but never read it, and it is kept in IndexedDB so it survives reloads. Every API call carries
// a DPoP proof (RFC 9449) signed with it; the session the server grants is bound to the key and
// lives in __Host- cookies that script cannot read. State-changing calls echo the CSRF cookie
// in X-CSRF-Token (double submit). No page has code of its own: <body data-page> picks it here.

const DB_NAME = "zeropay";
const DB_STORE = "keys";
const DEVICE_KEY_ID = "device";
const CSRF_COOKIE = "__Host-zp_csrf";
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
const APPROVAL_POLL_MS = 2000;
const APPROVAL_POLLS_MAX = 150; // 5 minutes, the flow's own lifetime
const encoder = new TextEncoder();

// ---- base64url ----------------------------------------------------------------------------------

export function b64u(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromB64u(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64 + "===".slice((base64.length + 3) % 4));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

// ---- the device key, kept in IndexedDB ------------------------------------------------------------

function openDatabase() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(DB_STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function inStore(mode, operation) {
  const db = await openDatabase();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(DB_STORE, mode);
      const request = operation(tx.objectStore(DB_STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

async function loadOrCreateKey() {
  const kept = await inStore("readonly", (store) => store.get(DEVICE_KEY_ID));
  if (kept) return kept;
  // extractable: false -- the private key can sign but can never be exported, not even by us.
  const pair = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["sign", "verify"],
  );
  const full = await crypto.subtle.exportKey("jwk", pair.publicKey);
  const record = {
    privateKey: pair.privateKey,
    jwk: { kty: full.kty, crv: full.crv, x: full.x, y: full.y }, // the public members only
  };
  try {
    // add, not put: if another tab made a key first, keep that one and use it.
    await inStore("readwrite", (store) => store.add(record, DEVICE_KEY_ID));
    return record;
  } catch {
    return inStore("readonly", (store) => store.get(DEVICE_KEY_ID));
  }
}

let deviceKeyPromise = null;

export function deviceKey() {
  deviceKeyPromise ??= loadOrCreateKey();
  return deviceKeyPromise;
}

// ---- DPoP proofs (RFC 9449) ----------------------------------------------------------------------

export async function dpopProof(method, url, accessToken) {
  const { privateKey, jwk } = await deviceKey();
  const target = new URL(url, location.origin);
  const header = { typ: "dpop+jwt", alg: "ES256", jwk };
  const payload = {
    jti: b64u(crypto.getRandomValues(new Uint8Array(16))),
    htm: method.toUpperCase(),
    htu: target.origin + target.pathname, // §4.2: without query and fragment
    iat: Math.floor(Date.now() / 1000),
  };
  if (accessToken) {
    payload.ath = b64u(await crypto.subtle.digest("SHA-256", encoder.encode(accessToken)));
  }
  const signingInput =
    b64u(encoder.encode(JSON.stringify(header))) + "." +
    b64u(encoder.encode(JSON.stringify(payload)));
  // WebCrypto's ECDSA signature is r || s, 32 bytes each: exactly JWS ES256 (RFC 7518 §3.4).
  const signature = await crypto.subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    privateKey,
    encoder.encode(signingInput),
  );
  return signingInput + "." + b64u(signature);
}

// ---- the API -------------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = problem.code || "";
    this.reason = problem.reason || "";
    this.until = problem.until || ""; // cooling_off: when this device may do it
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return "";
}

export async function api(method, path, body) {
  const headers = { DPoP: await dpopProof(method, path) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!SAFE_METHODS.has(method)) {
    const csrf = cookie(CSRF_COOKIE);
    if (csrf) headers["X-CSRF-Token"] = csrf;
  }
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
    redirect: "error",
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data || {});
  return { status: response.status, data };
}

function step(flowId, factor, answer = {}) {
  return api("POST", `/v1/auth/flows/${encodeURIComponent(flowId)}/steps`, {
    factor,
    ...answer,
    use_cookie: true, // the session goes to HttpOnly __Host- cookies, never to script
  });
}

// ---- WebAuthn: base64url JSON <-> ArrayBuffers ---------------------------------------------------

function descriptors(list) {
  return (list || []).map((item) => ({ ...item, id: fromB64u(item.id) }));
}

export function creationOptions(json) {
  return {
    ...json,
    challenge: fromB64u(json.challenge),
    user: { ...json.user, id: fromB64u(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials),
  };
}

export function requestOptions(json) {
  return {
    ...json,
    challenge: fromB64u(json.challenge),
    allowCredentials: descriptors(json.allowCredentials),
  };
}

export function credentialJson(credential) {
  const r = credential.response;
  const response = { clientDataJSON: b64u(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = b64u(r.attestationObject);
    if (typeof r.getTransports === "function") response.transports = r.getTransports();
  } else {
    response.authenticatorData = b64u(r.authenticatorData);
    response.signature = b64u(r.signature);
    if (r.userHandle) response.userHandle = b64u(r.userHandle);
  }
  const out = {
    id: credential.id,
    rawId: b64u(credential.rawId),
    type: credential.type,
    response,
    clientExtensionResults: credential.getClientExtensionResults(),
  };
  if (credential.authenticatorAttachment) {
    out.authenticatorAttachment = credential.authenticatorAttachment;
  }
  return out;
}

async function createPasskey(publicKey) {
  const made = await navigator.credentials.create({ publicKey: creationOptions(publicKey) });
  return credentialJson(made);
}

async function usePasskey(publicKey) {
  const used = await navigator.credentials.get({ publicKey: requestOptions(publicKey) });
  return credentialJson(used);
}

// ---- page helpers --------------------------------------------------------------------------------

const byId = (id) => document.getElementById(id);

function say(text) {
  const status = byId("status");
  status.textContent = text;
  status.hidden = !text;
}

// A failure the page itself detected, worded for the user.
class PageError extends Error {}

function explain(error) {
  if (error instanceof PageError) return error.message;
  if (error instanceof ApiError) {
    if (error.status === 429) return "Too many attempts. Wait a minute and try again.";
    const text = error.message;
    const said = text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
    return error.code === "cooling_off" && error.until
      ? `${said} This device may do it from ${when(error.until)}.` : said;
  }
  if (error && error.name === "NotAllowedError") {
    return "The passkey was not used: it was cancelled, it timed out, or this device " +
      "could not verify your fingerprint, face or screen lock.";
  }
  if (error && error.name === "InvalidStateError") {
    return "This device already has a ZeroPay passkey.";
  }
  return "Something went wrong. Check your connection and try again.";
}

function showError(error) {
  say("");
  const box = byId("error");
  box.textContent = explain(error);
  box.hidden = false;
}

function clearError() {
  const box = byId("error");
  box.textContent = "";
  box.hidden = true;
}

// Run an action with its button disabled; any failure is shown on the page.
async function busy(button, action) {
  clearError();
  if (button) button.disabled = true;
  try {
    await action();
  } catch (error) {
    showError(error);
  } finally {
    if (button) button.disabled = false;
  }
}

function onSubmit(form, action) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(form.querySelector("button[type=submit]"), () => action(new FormData(form)));
  });
}

// Where to go after signing in: back to the checkout that sent the payer here, else the account.
// Only a checkout page of this origin: an open redirect would let any link pick the next page.
function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "";
  return /^\/pay\/[a-z]+_[0-9a-z]{1,40}$/.test(next) ? next : "/account";
}

function signedIn() {
  location.assign(nextPage());
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Show the number, wait until a bound device approves, then answer the step.
async function approveFromOtherDevice(flowId) {
  const path = `/v1/auth/flows/${encodeURIComponent(flowId)}`;
  const asked = await api("POST", `${path}/approval`);
  byId("approval-number").textContent = asked.data.approval.number;
  byId("approval").hidden = false;
  say("Waiting for your other device…");
  for (let i = 0; i < APPROVAL_POLLS_MAX; i++) {
    await sleep(APPROVAL_POLL_MS);
    const flow = (await api("GET", path)).data;
    const state = flow.approval ? flow.approval.state : "";
    if (state === "approved") {
      byId("approval").hidden = true;
      return step(flowId, "bound_device_approval");
    }
    if (state === "denied" || flow.status !== "active") {
      byId("approval").hidden = true;
      throw new PageError("The sign-in was not approved. Start again.");
    }
  }
  throw new PageError("No approval came in time. Start again.");
}

// ---- pages ---------------------------------------------------------------------------------------

function signupPage() {
  let flowId = "";
  onSubmit(byId("signup-form"), async (form) => {
    const made = await api("POST", "/v1/users", {
      email: form.get("email"),
      password: form.get("password"),
    });
    flowId = made.data.flow.id;
    byId("signup-form").hidden = true;
    byId("signup-code-form").hidden = false;
    byId("signup-code").focus();
  });
  onSubmit(byId("signup-code-form"), async (form) => {
    const code = String(form.get("code")).replace(/\s+/g, "");
    await step(flowId, "email_otp", { code });
    byId("signup-code-form").hidden = true;
    byId("signup-done").hidden = false;
  });
}

const FACTOR_CHOICES = {
  totp: "Code from my authenticator app",
  email_otp: "Email me a code",
  sms_otp: "Text me a code",
  bound_device_approval: "Approve from my other device",
};

function loginPage() {
  byId("passkey-login").addEventListener("click", (event) => {
    busy(event.currentTarget, async () => {
      // No email: the passkey itself names the account (a discoverable credential).
      const flow = (await api("POST", "/v1/auth/flows", { point: "login" })).data;
      const options = await api("POST", `/v1/auth/flows/${flow.id}/passkey-options`);
      say("Confirm with your fingerprint, face or screen lock…");
      const credential = await usePasskey(options.data.publicKey);
      const done = await step(flow.id, "passkey", { credential });
      if (done.status === 201) signedIn();
      else throw new PageError("The sign-in did not finish. Start again.");
    });
  });
  onSubmit(byId("password-form"), async (form) => {
    const flow = (await api("POST", "/v1/auth/flows", {
      point: "login",
      email: form.get("email"),
    })).data;
    const after = await step(flow.id, "password", { password: form.get("password") });
    if (after.status === 201) return signedIn();
    chooseSecondFactor(flow.id, after.data.flow.next);
  });
}

// One button per factor the flow offers next (and this page knows how to answer).
function factorButtons(next, labels, start) {
  const choices = byId("factor-choices");
  choices.replaceChildren();
  for (const factor of next.filter((f) => f in labels)) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.dataset.factor = factor;
    button.textContent = labels[factor];
    button.addEventListener("click", () => busy(button, () => start(factor)));
    choices.append(button);
  }
}

function chooseSecondFactor(flowId, next) {
  factorButtons(next, FACTOR_CHOICES, (factor) => startFactor(flowId, factor));
  byId("password-login").hidden = true;
  byId("second-factor").hidden = false;
}

// What the login page does with a step's answer: 201 carries the session.
function loginAnswered(answer) {
  if (answer.status === 201) signedIn();
}

// The login and recovery pages share this: send the code or ask the other device, then hand
// the step's answer to the page.
async function startFactor(flowId, factor, answered = loginAnswered) {
  const form = byId("otp-form");
  if (factor === "bound_device_approval") {
    form.hidden = true;
    await answered(await approveFromOtherDevice(flowId));
    return;
  }
  if (factor === "email_otp" || factor === "sms_otp") {
    await api("POST", `/v1/auth/flows/${flowId}/codes`, { factor });
    say(factor === "email_otp" ? "We emailed you a code." : "We texted you a code.");
  }
  byId("otp-label").textContent = factor === "totp" ? "Code from your app" : "Code";
  form.dataset.flow = flowId;
  form.dataset.factor = factor;
  form.hidden = false;
  byId("otp-code").focus();
}

function otpForm(answered = loginAnswered) {
  const form = byId("otp-form");
  onSubmit(form, async (fields) => {
    const code = String(fields.get("code")).replace(/\s+/g, "");
    await answered(await step(form.dataset.flow, form.dataset.factor, { code }));
  });
}

function guessDeviceName() {
  const agent = navigator.userAgent;
  const system = /Android/.test(agent) ? "Android" : /iPhone|iPad/.test(agent) ? "iOS"
    : /Mac OS X/.test(agent) ? "macOS" : /Windows/.test(agent) ? "Windows"
    : /Linux/.test(agent) ? "Linux" : "this system";
  return `Browser on ${system}`;
}

function bindPage() {
  let flowId = "";
  let emailDone = false; // a retry after a cancelled passkey prompt skips the code
  byId("bind-name").value = guessDeviceName();
  // Signed in already (right after sign-up): fill in the address.
  api("GET", "/v1/me").then(
    (me) => { if (!byId("bind-email").value) byId("bind-email").value = me.data.email; },
    () => {},
  );
  onSubmit(byId("bind-form"), async (form) => {
    const flow = (await api("POST", "/v1/auth/flows", {
      point: "device_registration",
      email: form.get("email"),
      device: { name: form.get("name"), platform: "web" },
    })).data;
    flowId = flow.id;
    emailDone = false;
    await api("POST", `/v1/auth/flows/${flowId}/codes`, { factor: "email_otp" });
    byId("bind-form").hidden = true;
    byId("bind-code-form").hidden = false;
    byId("bind-code").focus();
  });
  onSubmit(byId("bind-code-form"), async (form) => {
    const path = `/v1/auth/flows/${flowId}`;
    let answer;
    if (emailDone) {
      answer = { status: 200, data: { flow: (await api("GET", path)).data } };
    } else {
      const code = String(form.get("code")).replace(/\s+/g, "");
      answer = await step(flowId, "email_otp", { code });
      emailDone = true;
      byId("bind-code").disabled = true;
    }
    if (answer.data.flow.next.includes("passkey")) {
      const options = await api("POST", `${path}/passkey-options`);
      say("Confirm with your fingerprint, face or screen lock to create the passkey…");
      const credential = await createPasskey(options.data.publicKey);
      answer = await step(flowId, "passkey", { credential });
    }
    if (answer.status !== 201 && answer.data.flow.next.includes("bound_device_approval")) {
      byId("bind-code-form").hidden = true;
      answer = await approveFromOtherDevice(flowId);
    }
    if (answer.status === 201) signedIn();
  });
}

// ---- recovering an account ---------------------------------------------------------------------
//
// Like a login, one factor at a time, but nothing is granted when the factors pass: the step's
// answer carries the recovery, and this device completes it (README, "Recovering your account").

const RECOVERY_CHOICES = {
  recovery_code: "Use one of my recovery codes",
  security_question: "Answer my security questions",
  passkey: "Use the passkey on this device",
  ...FACTOR_CHOICES,
};
const RECOVERY_FORMS = ["otp-form", "recovery-code-form", "questions-form"];
// A held recovery may wait days for review; this browser keeps its flow id (not a secret: only
// this device's key can read or complete it) so that "Check again" works after a reload.
const HELD_RECOVERY_KEY = "zeropay.heldRecovery";

function recoverPage() {
  let flowId = "";
  const recoveryPath = () => `/v1/auth/flows/${encodeURIComponent(flowId)}/recovery`;
  const answered = (answer) => recoveryAnswered(flowId, answer, answered);
  byId("recover-name").value = guessDeviceName();
  otpForm(answered);
  onSubmit(byId("recover-form"), async (form) => {
    const flow = (await api("POST", "/v1/auth/flows", {
      point: "recovery",
      email: form.get("email"),
      device: { name: form.get("name"), platform: "web" },
    })).data;
    flowId = flow.id;
    byId("recover-form").hidden = true;
    recoveryFactors(flowId, flow.next, answered);
  });
  onSubmit(byId("recovery-code-form"), async (form) => {
    const code = String(form.get("code")).trim();
    await answered(await step(flowId, "recovery_code", { code }));
  });
  onSubmit(byId("questions-form"), async (form) => {
    const answers = {};
    for (const [question, answer] of form.entries()) {
      if (String(answer).trim()) answers[question] = String(answer);
    }
    const required = Number(byId("questions-form").dataset.required);
    if (Object.keys(answers).length !== required) {
      throw new PageError(`Answer the ${required} questions you chose, and only those.`);
    }
    await answered(await step(flowId, "security_question", { answers }));
  });
  onSubmit(byId("recover-complete-form"), async (form) => {
    const body = { use_cookie: true }; // the session goes to HttpOnly __Host- cookies
    const password = String(form.get("password"));
    if (password) body.new_password = password; // empty: the password stays as it was
    await api("POST", `${recoveryPath()}/complete`, body);
    localStorage.removeItem(HELD_RECOVERY_KEY);
    location.assign("/account");
  });
  byId("recover-check").addEventListener("click", (event) => {
    busy(event.currentTarget, async () => {
      showRecovery(flowId, (await api("GET", recoveryPath())).data);
    });
  });
  const held = localStorage.getItem(HELD_RECOVERY_KEY);
  if (held) {
    flowId = held;
    busy(null, async () => {
      try {
        byId("recover-form").hidden = true;
        showRecovery(flowId, (await api("GET", recoveryPath())).data);
      } catch (error) {
        localStorage.removeItem(HELD_RECOVERY_KEY); // gone, or not this device's: start afresh
        byId("recover-form").hidden = false;
        if (!(error instanceof ApiError && [401, 404].includes(error.status))) throw error;
      }
    });
  }
}

function recoveryFactors(flowId, next, answered) {
  if (!next.length) throw new PageError("This recovery did not finish. Start again.");
  factorButtons(next, RECOVERY_CHOICES, (factor) => startRecoveryFactor(flowId, factor, answered));
  byId("recover-factors").hidden = false;
}

function hideRecoveryForms() {
  for (const id of RECOVERY_FORMS) {
    byId(id).hidden = true;
    byId(id).reset();
  }
  byId("approval").hidden = true;
}

async function startRecoveryFactor(flowId, factor, answered) {
  hideRecoveryForms();
  say("");
  if (factor === "passkey") {
    const path = `/v1/auth/flows/${encodeURIComponent(flowId)}`;
    const options = await api("POST", `${path}/passkey-options`);
    say("Confirm with your fingerprint, face or screen lock…");
    const credential = await usePasskey(options.data.publicKey);
    return answered(await step(flowId, "passkey", { credential }));
  }
  if (factor === "recovery_code") {
    byId("recovery-code-form").hidden = false;
    byId("recovery-code").focus();
    return undefined;
  }
  if (factor === "security_question") return showQuestions();
  return startFactor(flowId, factor, answered); // email, text, app code or approval: as at login
}

// Every question on offer: the flow does not say which two this account chose (that would tell
// anyone who types an address), so the user fills in their own two.
async function showQuestions() {
  const offered = (await api("GET", "/v1/security-questions")).data;
  const fields = byId("questions");
  fields.replaceChildren();
  for (const question of offered.data) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.id = `question-${question.id}`;
    input.name = question.id;
    input.autocomplete = "off";
    label.htmlFor = input.id;
    label.textContent = question.text;
    fields.append(label, input);
  }
  const form = byId("questions-form");
  form.dataset.required = String(offered.required);
  byId("questions-hint").textContent =
    `Answer the ${offered.required} questions you chose; leave the others empty.`;
  form.hidden = false;
  fields.querySelector("input").focus();
}

// A step's answer: another factor to go, or the recovery the flow ended in.
async function recoveryAnswered(flowId, answer, answered) {
  hideRecoveryForms();
  if (!answer.data.recovery) {
    say("Done. Now one more:");
    return recoveryFactors(flowId, answer.data.flow.next, answered);
  }
  byId("recover-factors").hidden = true;
  return showRecovery(flowId, answer.data.recovery);
}

function showRecovery(flowId, recovery) {
  const status = recovery.status;
  byId("recover-held").hidden = status !== "held";
  byId("recover-complete-form").hidden = !["ready", "approved"].includes(status);
  if (status === "held") {
    localStorage.setItem(HELD_RECOVERY_KEY, flowId);
    say("");
    return;
  }
  localStorage.removeItem(HELD_RECOVERY_KEY);
  if (status === "ready" || status === "approved") {
    say("It is you.");
    byId("recover-password").focus();
    return;
  }
  if (status === "completed") {
    location.assign("/account");
    return;
  }
  throw new PageError({
    denied: "This recovery was refused after review. Nothing was changed.",
    expired: "This recovery has expired. Start again.",
    reported: "This recovery was reported as not you, and the account is frozen.",
  }[status] || "This recovery cannot be completed. Start again.");
}

function item(list, title, detail) {
  const li = document.createElement("li");
  li.textContent = title;
  if (detail) {
    const small = document.createElement("small");
    small.textContent = detail;
    li.append(small);
  }
  list.append(li);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

async function accountPage() {
  let me;
  try {
    me = (await api("GET", "/v1/me")).data;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      byId("signed-out").hidden = false;
      return;
    }
    throw error;
  }
  const [factors, notices, risk, sca, consents, recoveries] = await Promise.all([
    api("GET", "/v1/me/factors"),
    api("GET", "/v1/me/notifications"),
    api("GET", "/v1/me/risk"),
    api("GET", "/v1/me/sca"),
    api("GET", "/v1/me/consents"),
    api("GET", "/v1/me/recoveries"),
  ]);
  showRecoveries(recoveries.data.items);
  showConfirmations(sca.data);
  showConsents(consents.data);
  const trustOf = new Map(risk.data.devices.map((d) => [d.id, d.trust]));
  const session = me.session;
  const current = factors.data.devices.find((d) => d.current);
  byId("account-email").textContent = me.email;
  byId("session-aal").textContent = String(session.aal);
  byId("session-methods").textContent = session.methods.map((m) => m.factor).join(" + ");
  byId("session-device").textContent = current ? current.name : "not bound";
  byId("session-expires").textContent = when(session.expires_at);
  byId("session-trust").textContent = risk.data.session ? `${risk.data.session.trust} / 100` : "";
  const factorList = byId("factors");
  factorList.replaceChildren();
  item(factorList, "Password");
  for (const a of factors.data.authenticators) {
    item(factorList, `${a.label} (${a.kind})`, `${a.status}, added ${when(a.created_at)}`);
  }
  const deviceList = byId("devices");
  deviceList.replaceChildren();
  for (const d of factors.data.devices) {
    const trust = trustOf.has(d.id) ? `, trust ${trustOf.get(d.id)} / 100` : "";
    item(deviceList, d.current ? `${d.name} (this device)` : d.name,
      `${d.platform}, last seen ${when(d.last_seen_at)}${trust}`);
  }
  const decisions = byId("risk-decisions");
  decisions.replaceChildren();
  for (const d of risk.data.decisions) {
    const why = d.reasons.length ? d.reasons.join(", ").replaceAll("_", " ") : "nothing unusual";
    const asked = d.factors.length ? `; asked for ${d.factors.join(" + ").replaceAll("_", " ")}` : "";
    item(decisions, `${d.event.replaceAll("_", " ")}: ${d.action} (score ${d.score})`,
      `${when(d.at)}: ${why}${asked}`);
  }
  if (!risk.data.decisions.length) item(decisions, "No checks yet.");
  const noticeList = byId("notifications");
  noticeList.replaceChildren();
  for (const n of notices.data.data) item(noticeList, n.body, when(n.created_at));
  if (!notices.data.data.length) item(noticeList, "Nothing new.");
  byId("signed-in").hidden = false;
  if (current) {
    // Only a device signed in with two factors approves; any other session is simply not asked.
    await showApprovals().catch((error) => {
      if (!(error instanceof ApiError && error.status === 403)) throw error;
    });
  }
}

const RECOVERY_STATES = {
  held: "waiting for review",
  ready: "passed, not completed yet",
  approved: "approved after review, not completed yet",
  denied: "refused after review",
  completed: "completed",
  reported: "reported as not you",
  expired: "expired",
};

// Recent recoveries, each with "This wasn't me"; while one cools off, say what that means.
function showRecoveries(recoveries) {
  const list = byId("recoveries");
  list.replaceChildren();
  for (const r of recoveries) {
    const where = r.new_device ? "on a new device" : "on a device you had";
    const cooling = r.cooling_until ? `, cooling off until ${when(r.cooling_until)}` : "";
    item(list, `Recovery ${RECOVERY_STATES[r.status] || r.status}`,
      `${when(r.started_at)}, ${where}${cooling}`);
    if (r.status !== "reported") notMeButton(list.lastElementChild, r);
  }
  if (!recoveries.length) item(list, "No recoveries.");
  const now = Date.now();
  const cooling = recoveries.find((r) => r.status === "completed" && r.cooling_until &&
    Date.parse(r.cooling_until) > now);
  const note = byId("cooling-off");
  note.hidden = !cooling;
  if (cooling) {
    note.textContent = `Cooling off until ${when(cooling.cooling_until)}: a recovery added a ` +
      "new device, which until then can look and make small payments only. It cannot change " +
      "your password, factors, devices or payees. Devices you had before keep every right.";
  }
}

// "This wasn't me" asks once more before it freezes the account: it ends every session, this
// one too, and only support can undo it.
function notMeButton(li, recovery) {
  const ask = document.createElement("button");
  ask.type = "button";
  ask.className = "secondary not-me";
  ask.textContent = "This wasn't me";
  const confirmBox = document.createElement("div");
  confirmBox.className = "confirm";
  confirmBox.hidden = true;
  const warning = document.createElement("p");
  warning.textContent = "Freeze your account? Every session ends, on every device, and the " +
    "device this recovery added is removed. Support must check who you are to unfreeze it.";
  const freeze = document.createElement("button");
  freeze.type = "button";
  freeze.className = "danger";
  freeze.textContent = "Yes, freeze my account";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "secondary";
  cancel.textContent = "Cancel";
  ask.addEventListener("click", () => { ask.hidden = true; confirmBox.hidden = false; });
  cancel.addEventListener("click", () => { confirmBox.hidden = true; ask.hidden = false; });
  freeze.addEventListener("click", () => busy(freeze, async () => {
    await api("POST", `/v1/me/recoveries/${encodeURIComponent(recovery.id)}/not-me`);
    // The session is gone with the rest; drop the CSRF cookie as signing out does.
    document.cookie = `${CSRF_COOKIE}=; Max-Age=0; Path=/; Secure; SameSite=Strict`;
    byId("signed-in").hidden = true;
    byId("frozen").hidden = false;
    say("");
  }));
  confirmBox.append(warning, freeze, cancel);
  li.append(ask, confirmBox);
}

// Which payments skipped the fingerprint and why, which asked for it and why, and how many more
// small ones may skip it before the next prompt.
function showConfirmations(sca) {
  const low = sca.low_value;
  let standing = `${sca.since_last_sca.exempt_payments} payment(s) without confirmation since ` +
    "the last one.";
  if (low && low.exempt_payments_left !== undefined) {
    standing += ` ${low.exempt_payments_left} more small payment(s) may skip it.`;
  } else if (low && low.amount_left) {
    const left = Object.entries(low.amount_left).map(([c, a]) => money(a, c)).join(", ");
    standing += ` Small payments may skip it up to ${left} more.`;
  }
  byId("sca-standing").textContent = standing;
  const list = byId("sca-decisions");
  list.replaceChildren();
  for (const d of sca.decisions) {
    const what = d.exemption
      ? `skipped: ${EXEMPTIONS[d.exemption] || d.exemption}`
      : `asked: ${d.reasons.map((r) => SCA_REASONS[r] || r).join("; ")}`;
    item(list, `${what} (${d.outcome})`, `${when(d.at)}, payment ${d.payment_id}`);
  }
  if (!sca.decisions.length) item(list, "No payments yet.");
}

// The signal groups the risk engine may use: a switch each, with when it last changed.
function showConsents(data) {
  for (const [group, consent] of Object.entries(data.consents)) {
    const box = byId(`consent-${group}`);
    if (!box) continue;
    box.checked = consent.given;
    byId(`consent-${group}-changed`).textContent =
      consent.changed_at ? `Changed ${when(consent.changed_at)}` : "";
  }
}

// Flows on other devices that wait for this bound device to approve them (number matching).
async function showApprovals() {
  const pending = (await api("GET", "/v1/me/approvals")).data.data;
  const list = byId("approvals");
  list.replaceChildren();
  for (const asked of pending) {
    const li = document.createElement("li");
    const form = document.createElement("form");
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.id = `approval-${asked.flow_id}`;
    input.name = "number";
    input.inputMode = "numeric";
    input.autocomplete = "off";
    input.required = true;
    label.htmlFor = input.id;
    label.textContent = `${asked.device.name} (${asked.device.platform}): number shown there`;
    const approve = document.createElement("button");
    approve.type = "submit";
    approve.textContent = "Approve";
    const deny = document.createElement("button");
    deny.type = "button";
    deny.className = "secondary";
    deny.textContent = "Deny";
    const decide = (decision, number) => busy(approve, async () => {
      await api("POST", `/v1/me/approvals/${encodeURIComponent(asked.flow_id)}`,
        { decision, number });
      say(decision === "approve" ? "Approved." : "Denied.");
      await showApprovals();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      decide("approve", input.value.trim());
    });
    deny.addEventListener("click", () => decide("deny", input.value.trim() || "-"));
    form.append(label, input, approve, deny);
    li.append(form);
    list.append(li);
  }
  byId("approvals-card").hidden = pending.length === 0;
}

function accountActions() {
  onSubmit(byId("consents-form"), async () => {
    const choices = {
      location: byId("consent-location").checked,
      behaviour: byId("consent-behaviour").checked,
    };
    try {
      showConsents((await api("PUT", "/v1/me/consents", choices)).data);
    } catch (error) {
      // Put the switches back as the server has them, then say why (a fresh sign-in is needed
      // to turn one off).
      showConsents((await api("GET", "/v1/me/consents")).data);
      throw error;
    }
    say("Choices saved.");
  });
  byId("add-passkey").addEventListener("click", (event) => {
    busy(event.currentTarget, async () => {
      const started = (await api("POST", "/v1/me/factors/passkey")).data;
      say("Confirm with your fingerprint, face or screen lock…");
      const credential = await createPasskey(started.publicKey);
      await api("POST", `/v1/me/factors/passkey/${started.id}/confirm`, { credential });
      await accountPage();
      say("Passkey added.");
    });
  });
  byId("sign-out").addEventListener("click", (event) => {
    busy(event.currentTarget, async () => {
      await api("DELETE", "/v1/sessions/current");
      // The session cookie is HttpOnly and now names a revoked session; drop the CSRF one.
      document.cookie = `${CSRF_COOKIE}=; Max-Age=0; Path=/; Secure; SameSite=Strict`;
      location.assign("/login");
    });
  });
}

// ---- the hosted checkout -------------------------------------------------------------------------

function money(amountMinor, currency) {
  const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
  const digits = format.resolvedOptions().maximumFractionDigits;
  return format.format(amountMinor / 10 ** digits);
}

// The canonical transaction data (domain/dynamic_linking.py): "zeropay-txn-v1", then payment id,
// amount (decimal), currency, payee and nonce, each with a 4-byte big-endian length.
function canonicalFields(bytes) {
  const tag = encoder.encode("zeropay-txn-v1");
  if (bytes.length < tag.length || tag.some((b, i) => bytes[i] !== b)) return null;
  const fields = [];
  let at = tag.length;
  while (at < bytes.length) {
    if (at + 4 > bytes.length) return null;
    const length = new DataView(bytes.buffer, bytes.byteOffset + at, 4).getUint32(0);
    at += 4;
    if (at + length > bytes.length) return null;
    fields.push(bytes.slice(at, at + length));
    at += length;
  }
  if (fields.length !== 5) return null;
  const text = new TextDecoder();
  return {
    paymentId: text.decode(fields[0]),
    amount: Number(text.decode(fields[1])),
    currency: text.decode(fields[2]),
    payee: text.decode(fields[3]),
  };
}

// What you see is what you sign: before the passkey or the device key proves anything, check
// that the bytes it will prove are this payment, this amount, this currency and this payee.
async function checkTransaction(txn, shown) {
  const bytes = new Uint8Array(fromB64u(txn.canonical));
  const fields = canonicalFields(bytes);
  const same = fields && fields.paymentId === shown.id && fields.amount === shown.amount &&
    fields.currency === shown.currency && fields.payee === shown.merchant_id;
  const digest = b64u(await crypto.subtle.digest("SHA-256", bytes));
  if (!same || digest !== txn.challenge) {
    throw new PageError("This confirmation is not for the payment shown. Nothing was paid.");
  }
  return bytes;
}

const EXEMPTIONS = {
  low_value: "a small payment",
  trusted_beneficiary: "a payee you trust",
  recurring: "a repeat of a payment you confirmed",
  transaction_risk_analysis: "a low-risk payment",
};

const SCA_REASONS = {
  risk_challenge: "something about this payment looks unusual",
  above_low_value_ceiling: "the amount is above the small-payment limit",
  low_value_cumulative_reached: "your small payments since the last confirmation add up",
  low_value_count_reached: "you made several small payments since the last confirmation",
};

async function payPage() {
  const paymentId = decodeURIComponent(location.pathname.split("/").pop());
  let shown;
  try {
    shown = (await api("GET", `/v1/checkout/${encodeURIComponent(paymentId)}`)).data;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      byId("pay-login").href = `/login?next=${encodeURIComponent(location.pathname)}`;
      byId("pay-signed-out").hidden = false;
      return;
    }
    throw error;
  }
  byId("pay-amount").textContent = money(shown.amount, shown.currency);
  byId("pay-payee").textContent = shown.merchant_name;
  byId("pay-description").textContent = shown.description;
  byId("pay-state").textContent = shown.status.replaceAll("_", " ");
  byId("pay-card").hidden = false;
  const payable = ["requires_confirmation", "requires_action"].includes(shown.status);
  byId("pay").hidden = !payable;
  if (!payable) return;
  let flow = null;
  const paid = (payment, how) => {
    byId("pay-card").hidden = true;
    byId("confirm-card").hidden = true;
    byId("paid-text").textContent = payment.status === "in_review"
      ? `${money(payment.amount, payment.currency)} is reserved while we check this payment.`
      : `Paid ${money(payment.amount, payment.currency)} to ${shown.merchant_name}.`;
    byId("paid-how").textContent = how;
    byId("paid-card").hidden = false;
    say("");
  };
  byId("pay").addEventListener("click", (event) => {
    busy(event.currentTarget, async () => {
      const answer = (await api("POST", `/v1/checkout/${encodeURIComponent(paymentId)}/confirm`))
        .data;
      const auth = answer.authentication;
      if (answer.status !== "requires_action") {
        const why = auth && auth.exemption
          ? `No confirmation was needed: ${EXEMPTIONS[auth.exemption] || auth.exemption}.` : "";
        return paid(answer, why);
      }
      flow = answer.next_action.flow;
      await checkTransaction(flow.transaction, shown);
      byId("confirm-amount").textContent = money(flow.transaction.amount,
        flow.transaction.currency);
      byId("confirm-payee").textContent = shown.merchant_name;
      const reasons = (auth ? auth.reasons : []).map((r) => SCA_REASONS[r] || r);
      byId("confirm-why").textContent = reasons.length ? `We ask because ${reasons.join("; ")}.`
        : "";
      byId("confirm-passkey").hidden = !flow.next.includes("passkey");
      byId("confirm-device-form").hidden = !flow.next.includes("device_key");
      byId("pay-card").hidden = true;
      byId("confirm-card").hidden = false;
    });
  });
  byId("confirm-passkey").addEventListener("click", (event) => {
    busy(event.currentTarget, async () => {
      const path = `/v1/auth/flows/${encodeURIComponent(flow.id)}`;
      const options = (await api("POST", `${path}/passkey-options`)).data;
      await checkTransaction(options.transaction, shown);
      if (options.publicKey.challenge !== options.transaction.challenge) {
        throw new PageError("This confirmation is not for the payment shown. Nothing was paid.");
      }
      say("Confirm with your fingerprint, face or screen lock…");
      const credential = await usePasskey(options.publicKey);
      const done = await step(flow.id, "passkey", { credential });
      paid(done.data.payment, "Confirmed with your passkey.");
    });
  });
  onSubmit(byId("confirm-device-form"), async (form) => {
    const signed = await checkTransaction(flow.transaction, shown);
    const { privateKey } = await deviceKey();
    const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, privateKey,
      signed);
    await step(flow.id, "device_key", { signature: b64u(signature), signed: b64u(signed) });
    const done = await step(flow.id, "password", { password: form.get("password") });
    paid(done.data.payment, "Confirmed with this device and your password.");
  });
}

const PAGES = {
  home: () => {},
  signup: signupPage,
  login: () => { loginPage(); otpForm(); },
  bind: bindPage,
  recover: recoverPage,
  account: () => { accountActions(); return busy(null, accountPage); },
  pay: () => busy(null, payPage),
};

const page = PAGES[document.body.dataset.page];
if (page) page();
