/**
 * The page a share link opens in a browser: /v1/secrets/shares/<id>#<key>. The key never
 * leaves the browser (a fragment is not sent); the page derives the view proof and decrypts
 * with WebCrypto, as `citadel share open` does with node:crypto (see share-crypto.ts for the
 * format). Nothing is spent until the recipient presses the button, so a link preview or a
 * prefetch does not use up a one-view link. Links with a passphrase need argon2id, which
 * browsers do not have: the page says so and shows the CLI command, before spending a view.
 * No third-party code, a strict CSP, everything written with textContent. Its script and
 * requests use relative addresses: behind a reverse proxy serving Citadel under a path
 * (https://host/citadel/v1/...), an absolute "/v1/..." would leave the path.
 */

/** Looser than the API's CSP only as far as the page needs: its own script and fetch. */
export const SHARE_PAGE_CSP = "default-src 'none'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export const SHARE_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <title>Citadel: a shared secret</title>
  <script src="../share-page.js" defer></script>
</head>
<body>
  <h1>A shared secret</h1>
  <p id="status">Checking the link…</p>
  <button id="open" hidden>Show it (this uses one view)</button>
  <pre id="value" hidden></pre>
</body>
</html>
`;

/**
 * The page's script. The functions at the top are pure (tested in Bun with the same
 * WebCrypto); `main` wires them to the page when it runs in a browser.
 */
export const SHARE_PAGE_JS = `"use strict";
const encoder = new TextEncoder();

function fromBase64url(text) {
  if (!/^[A-Za-z0-9_-]+$/.test(text)) throw new Error("the link is damaged");
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function toBase64url(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
}

async function viewProof(linkKey) {
  const key = await crypto.subtle.importKey("raw", fromBase64url(linkKey), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return toBase64url(await crypto.subtle.sign("HMAC", key, encoder.encode("citadel share view proof v1")));
}

async function openShare(ciphertext, linkKey) {
  if (!ciphertext.startsWith("c1.sh.")) throw new Error("not a share made by citadel");
  const data = fromBase64url(ciphertext.slice(6));
  if (data[0] !== 0) throw new Error("this link needs a passphrase: open it with citadel share open");
  const ikm = await crypto.subtle.importKey("raw", fromBase64url(linkKey), "HKDF", false, ["deriveKey"]);
  const key = await crypto.subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: encoder.encode("citadel share v1") }, ikm, { name: "AES-GCM", length: 256 }, false, ["decrypt"]);
  const aad = new Uint8Array([...encoder.encode("c1.sh"), data[0]]);
  try {
    const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: data.subarray(1, 13), additionalData: aad }, key, data.subarray(13));
    return new TextDecoder().decode(plain);
  } catch {
    throw new Error("the link is wrong or damaged");
  }
}

async function main() {
  const status = document.getElementById("status");
  const button = document.getElementById("open");
  const output = document.getElementById("value");
  const id = location.pathname.split("/").pop();
  const linkKey = location.hash.slice(1);
  const post = async (what, proof) => {
    const res = await fetch(encodeURIComponent(id) + "/" + what, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ proof }) });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.detail || "the link cannot be opened (" + res.status + ")");
    return body;
  };
  try {
    if (!linkKey) throw new Error("the link is incomplete: its part after # is missing");
    const proof = await viewProof(linkKey);
    const about = await post("peek", proof);
    if (about.passphrase) {
      // Not a command line holding the link: its key would sit in shell history and in the process list.
      status.textContent = "This link also needs a passphrase, which a browser cannot use here. Open it with citadel share open, and paste this page's address when it asks for the link.";
      return;
    }
    status.textContent = about.views_left + " view(s) left, until " + about.expires_at + ".";
    button.hidden = false;
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const content = await post("view", proof);
        output.textContent = await openShare(content.ciphertext, linkKey);
        output.hidden = false;
        button.hidden = true;
        status.textContent = content.views_left > 0 ? content.views_left + " view(s) left." : "That was the last view: the link no longer opens.";
      } catch (error) {
        status.textContent = error.message;
      }
    }, { once: true });
  } catch (error) {
    status.textContent = error.message;
  }
}

if (typeof document !== "undefined") main();
`;
