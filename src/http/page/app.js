// Mayfly's page: pick an address, watch its inbox live, read, download and delete mail.
//
// No framework and no build step. Everything that comes from a message (subjects,
// addresses, previews, headers, file names) reaches the page through textContent or
// setAttribute, never innerHTML. The message's HTML (already sanitized by the server) is
// shown only inside a sandboxed iframe without allow-scripts, whose srcdoc carries its own
// Content-Security-Policy, so even a sanitizer bug would not run script or load remote
// content.
//
// Live updates: a WebSocket (`/ws`, one JSON summary per new message) when the server
// offers one; when it cannot be opened or closes, a long poll (`?wait=`) takes over, with
// exponential backoff on errors, and the WebSocket is tried again later.
//
// Private inboxes (`--private-inboxes`): the inbox's token, which the server hands out with
// a new address, lives in the URL fragment beside the address (`#address&token=...`; the
// fragment is never sent to a server) and goes with every request for that inbox: as
// `Authorization: Bearer` on API calls, and as `?token=` where no header can be set (the
// WebSocket, download links, the message's inline images).
'use strict';

(() => {
  const API = '/api/v1';
  /** Messages asked for per listing: the server's maximum, so a burst is never cut. */
  const LIST_LIMIT = 1000;
  /** Seconds a long poll is held by the server (its maximum is 60). */
  const POLL_WAIT_S = 25;
  /** Extra time the client grants a long poll before it gives up on the connection. */
  const POLL_SLACK_MS = 10000;
  const POLL_BACKOFF_MIN_MS = 1000;
  const POLL_BACKOFF_MAX_MS = 30000;
  const WS_RETRY_MIN_MS = 5000;
  const WS_RETRY_MAX_MS = 5 * 60 * 1000;
  /** How often relative times are redrawn and expired messages dropped. */
  const TICK_MS = 15000;
  /** How long "Empty inbox" stays armed waiting for its confirming second click. */
  const ARM_MS = 4000;
  const COPIED_MS = 1500;

  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $('address-form'),
    input: $('address-input'),
    copy: $('copy-button'),
    create: $('new-button'),
    notice: $('notice'),
    main: $('main'),
    live: $('live-status'),
    count: $('inbox-count'),
    empty: $('empty-button'),
    emptyHint: $('inbox-empty'),
    list: $('message-list'),
    reader: $('reader'),
    readerEmpty: $('reader-empty'),
    readerEmptyText: $('reader-empty-text'),
    back: $('back-button'),
    raw: $('raw-link'),
    del: $('delete-button'),
    title: $('reader-title'),
    meta: $('reader-meta'),
    attachments: $('attachments'),
    attachmentList: $('attachment-list'),
    viewSwitch: $('view-switch'),
    viewHtml: $('view-html'),
    viewText: $('view-text'),
    body: $('body-slot'),
    headerRows: document.querySelector('#header-table tbody'),
    search: $('search-form'),
    searchInput: $('search-input'),
  };

  const state = {
    /** The inbox being watched (lowercase), or null. */
    address: null,
    /** The search typed into the box (`?q=`), and the ids the server found for it; null
     *  when no search is active (then every message is listed). */
    query: '',
    matches: null,
    /** Its token, from the fragment or the server's generator; null if none is known. */
    token: null,
    /** Bumped whenever the address changes; async work started for an older one stops. */
    generation: 0,
    /** id -> summary of every message listed. */
    messages: new Map(),
    /** ids that arrived while the page watched and were not opened yet. */
    unread: new Set(),
    /** id -> <li> of the list, so redraws keep nodes (and keyboard focus) in place. */
    items: new Map(),
    /** The newest id seen, passed as ?after= (ids sort by arrival within an inbox). */
    cursor: null,
    openId: null,
    /** The open message's full JSON, for the HTML/Text switch. */
    openMessage: null,
    ws: null,
    wsRetryMs: WS_RETRY_MIN_MS,
    wsRetryTimer: 0,
    pollAbort: null,
    emptyArmTimer: 0,
  };

  // ---------------------------------------------------------------------------------
  // Small helpers.

  /** An element with attributes and text or element children; no HTML parsing. */
  function node(tag, attrs, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === 'class') element.className = value;
      else element.setAttribute(name, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      element.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return element;
  }

  function inboxPath(address) {
    return `${API}/inboxes/${encodeURIComponent(address)}`;
  }

  function messagePath(address, id) {
    return `${inboxPath(address)}/messages/${encodeURIComponent(id)}`;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** `url` with the open inbox's token as `?token=`, for what cannot send a header. */
  function withToken(url) {
    if (!state.token) return url;
    return `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(state.token)}`;
  }

  /** The message's HTML with the token on its inline images, which point at this inbox's
   *  attachment URLs (the only `src` the server's sanitizer leaves). */
  function withTokenOnImages(html) {
    if (!state.token) return html;
    return html.replace(/(\ssrc=")(\/api\/v1\/inboxes\/[^"?#]*\/attachments\/\d+)"/g,
      (_, before, url) => `${before}${withToken(url)}"`);
  }

  /** fetch + JSON, turning the API's error body into an ApiError. Calls for an inbox
   *  carry the open inbox's token (every such call is for the open inbox). */
  async function api(path, options) {
    const headers = { Accept: 'application/json', ...((options && options.headers) || {}) };
    if (state.token && path.startsWith(`${API}/inboxes/`)) headers.Authorization = `Bearer ${state.token}`;
    const response = await fetch(path, {
      cache: 'no-store',
      ...options,
      headers,
    });
    if (response.status === 204) return null;
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const error = (body && body.error) || {};
      throw new ApiError(response.status, error.code || 'http_error', error.message || `HTTP ${response.status}`);
    }
    return body;
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      if (signal) signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }

  function notice(text, isError) {
    ui.notice.textContent = text;
    ui.notice.classList.toggle('error', Boolean(isError));
  }

  function setLive(stateName, text) {
    ui.live.dataset.state = stateName;
    ui.live.textContent = text;
  }

  function formatSize(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  function formatSpan(ms) {
    const minutes = Math.round(ms / 60000);
    if (minutes < 1) return 'less than a minute';
    if (minutes < 60) return `${minutes} min`;
    const hours = Math.floor(minutes / 60);
    const rest = minutes % 60;
    if (hours < 48) return rest ? `${hours} h ${rest} min` : `${hours} h`;
    return `${Math.round(hours / 24)} days`;
  }

  function ago(iso) {
    const ms = Date.now() - Date.parse(iso);
    return ms < 60000 ? 'just now' : `${formatSpan(ms)} ago`;
  }

  function expiresIn(iso) {
    const ms = Date.parse(iso) - Date.now();
    return ms <= 0 ? 'expiring' : `expires in ${formatSpan(ms)}`;
  }

  function localTime(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
  }

  function isSummary(value) {
    return value !== null && typeof value === 'object' && typeof value.id === 'string'
      && typeof value.expires_at === 'string';
  }

  // ---------------------------------------------------------------------------------
  // The address: from the box, the URL fragment, or the server's generator.

  /** `name@domain` checked loosely (the server decides), lowercased as the server keys it. */
  function normalizeAddress(text) {
    let address = text.trim();
    if (!address.includes('@') && address && state.address) {
      address = `${address}@${state.address.split('@').pop()}`;
    }
    const at = address.lastIndexOf('@');
    if (at <= 0 || at === address.length - 1 || /[\s/?#]/.test(address)) return null;
    return address.toLowerCase();
  }

  /** The address and token of the fragment, `#address` or `#address&token=...` (the
   *  address is percent-encoded, so its own `&` never shows). */
  function fromHash() {
    const fragment = location.hash.slice(1);
    if (!fragment) return null;
    const [encoded, ...params] = fragment.split('&');
    try {
      const address = normalizeAddress(decodeURIComponent(encoded));
      if (!address) return null;
      const token = new URLSearchParams(params.join('&')).get('token');
      return { address, token: token || null };
    } catch (_) {
      return null;
    }
  }

  function hashFor(address, token) {
    const hash = `#${encodeURIComponent(address).replace(/%40/g, '@')}`;
    return token ? `${hash}&token=${encodeURIComponent(token)}` : hash;
  }

  function openAddress(address, token) {
    if (address === state.address && token === state.token) return;
    state.address = address;
    state.token = token;
    if (location.hash !== hashFor(address, token)) history.replaceState(null, '', hashFor(address, token));
    ui.input.value = address;
    state.query = '';
    state.matches = null;
    ui.searchInput.value = '';
    ui.searchInput.disabled = false;
    ui.copy.disabled = false;
    ui.empty.disabled = false;
    document.title = `${address} · Mayfly`;
    closeReader();
    startWatching();
  }

  async function createAddress() {
    const typed = ui.input.value.trim();
    const domain = typed.includes('@') ? typed.split('@').pop().trim() : '';
    ui.create.disabled = true;
    try {
      const created = await api(`${API}/addresses`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: domain ? JSON.stringify({ domain }) : '',
      });
      openAddress(created.address.toLowerCase(), typeof created.token === 'string' ? created.token : null);
      notice(`New address ready. Each message is kept for ${formatSpan(created.ttl_seconds * 1000)}.`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 400 && !domain) {
        notice('This server takes mail for any domain: type @ and a domain in the box, then press New address.', true);
      } else if (error instanceof ApiError && error.status === 400) {
        notice(`This server does not hand out addresses on ${domain}.`, true);
      } else {
        notice(`Could not create an address: ${error.message}`, true);
      }
    } finally {
      ui.create.disabled = false;
    }
  }

  async function copyAddress() {
    if (!state.address) return;
    const text = state.address;
    let copied = false;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        copied = true;
      } catch (_) {
        copied = false;
      }
    }
    if (!copied) {
      // Plain http on a real host name is not a secure context: no Clipboard API there.
      ui.input.value = text;
      ui.input.select();
      try {
        copied = document.execCommand('copy');
      } catch (_) {
        copied = false;
      }
    }
    if (copied) {
      ui.copy.textContent = 'Copied';
      notice(`Copied ${text} to the clipboard.`);
      setTimeout(() => { ui.copy.textContent = 'Copy'; }, COPIED_MS);
    } else {
      ui.input.select();
      notice('Copying is blocked here: the address is selected, copy it by hand.', true);
    }
  }

  // ---------------------------------------------------------------------------------
  // Watching the inbox: first a full listing, then WebSocket or long poll.

  function stopLive() {
    if (state.ws) {
      const ws = state.ws;
      state.ws = null;
      ws.close();
    }
    if (state.pollAbort) {
      state.pollAbort.abort();
      state.pollAbort = null;
    }
    clearTimeout(state.wsRetryTimer);
    state.wsRetryTimer = 0;
  }

  async function startWatching() {
    const generation = ++state.generation;
    stopLive();
    state.messages.clear();
    state.unread.clear();
    state.cursor = null;
    state.wsRetryMs = WS_RETRY_MIN_MS;
    renderList();
    setLive('waiting', 'Loading…');
    let backoff = POLL_BACKOFF_MIN_MS;
    for (;;) {
      try {
        const listing = await api(`${inboxPath(state.address)}?limit=${LIST_LIMIT}`);
        if (generation !== state.generation) return;
        applyListing(listing, true);
        break;
      } catch (error) {
        if (generation !== state.generation) return;
        if (error instanceof ApiError && error.status === 404) {
          setLive('idle', 'Not watching');
          notice(state.token
            ? `This server does not take mail for ${state.address}, or this token is not its own.`
            : `This server does not take mail for ${state.address}, or its inboxes are private: open it with the link that has its token.`, true);
          return;
        }
        setLive('waiting', `Offline, retrying in ${Math.round(backoff / 1000)} s`);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, POLL_BACKOFF_MAX_MS);
      }
    }
    connectWebSocket(generation);
  }

  function connectWebSocket(generation) {
    if (typeof WebSocket !== 'function') {
      startPolling(generation);
      return;
    }
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      ws = new WebSocket(withToken(`${scheme}//${location.host}${inboxPath(state.address)}/ws`));
    } catch (_) {
      startPolling(generation);
      return;
    }
    state.ws = ws;
    ws.addEventListener('open', () => {
      if (generation !== state.generation || state.ws !== ws) return;
      state.wsRetryMs = WS_RETRY_MIN_MS;
      if (state.pollAbort) {
        state.pollAbort.abort();
        state.pollAbort = null;
      }
      setLive('live', 'Live');
      // Mail that arrived before the socket opened is not pushed: list it now.
      catchUp(generation);
    });
    ws.addEventListener('message', (event) => {
      if (generation !== state.generation || state.ws !== ws) return;
      let summary = null;
      try {
        summary = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (isSummary(summary)) addMessages([summary], true);
    });
    ws.addEventListener('close', () => {
      if (state.ws !== ws) return;
      state.ws = null;
      if (generation !== state.generation) return;
      // Not (or no longer) available: long-poll now, try the socket again later.
      startPolling(generation);
      clearTimeout(state.wsRetryTimer);
      state.wsRetryTimer = setTimeout(() => {
        if (generation === state.generation && !state.ws) connectWebSocket(generation);
      }, state.wsRetryMs);
      state.wsRetryMs = Math.min(state.wsRetryMs * 2, WS_RETRY_MAX_MS);
    });
  }

  async function catchUp(generation) {
    try {
      const after = encodeURIComponent(state.cursor || '');
      const listing = await api(`${inboxPath(state.address)}?after=${after}&limit=${LIST_LIMIT}`);
      if (generation === state.generation) applyListing(listing, false);
    } catch (_) {
      // The socket is up; the next message or a later reload will show the rest.
    }
  }

  async function startPolling(generation) {
    if (state.pollAbort) return;
    const loop = new AbortController();
    state.pollAbort = loop;
    let backoff = POLL_BACKOFF_MIN_MS;
    setLive('live', 'Live (polling)');
    while (generation === state.generation && !loop.signal.aborted) {
      const request = new AbortController();
      const stop = () => request.abort();
      loop.signal.addEventListener('abort', stop, { once: true });
      const timer = setTimeout(stop, POLL_WAIT_S * 1000 + POLL_SLACK_MS);
      try {
        const after = encodeURIComponent(state.cursor || '');
        const listing = await api(
          `${inboxPath(state.address)}?after=${after}&wait=${POLL_WAIT_S}&limit=${LIST_LIMIT}`,
          { signal: request.signal },
        );
        if (generation !== state.generation || loop.signal.aborted) break;
        applyListing(listing, false);
        backoff = POLL_BACKOFF_MIN_MS;
        setLive('live', 'Live (polling)');
      } catch (error) {
        if (generation !== state.generation || loop.signal.aborted) break;
        setLive('waiting', `Offline, retrying in ${Math.round(backoff / 1000)} s`);
        await sleep(backoff, loop.signal);
        backoff = Math.min(backoff * 2, POLL_BACKOFF_MAX_MS);
      } finally {
        clearTimeout(timer);
        loop.signal.removeEventListener('abort', stop);
      }
    }
    if (state.pollAbort === loop) state.pollAbort = null;
  }

  /** A listing from the server: the whole inbox (`full`) or what came after the cursor. */
  function applyListing(listing, full) {
    if (full) {
      state.messages.clear();
      for (const summary of listing.messages) state.messages.set(summary.id, summary);
    } else {
      addMessages(listing.messages, true);
    }
    if (typeof listing.next_after === 'string') state.cursor = listing.next_after;
    renderList();
    // Messages also leave by TTL, eviction or another client's delete: resync when the
    // server's count says we hold some that are gone.
    if (!full && typeof listing.total === 'number' && listing.total < state.messages.size) {
      resync(state.generation);
    }
  }

  async function resync(generation) {
    try {
      const listing = await api(`${inboxPath(state.address)}?limit=${LIST_LIMIT}`);
      if (generation !== state.generation) return;
      const keep = new Set(listing.messages.map((summary) => summary.id));
      for (const id of [...state.messages.keys()]) if (!keep.has(id)) forget(id);
      addMessages(listing.messages, false);
      renderList();
    } catch (_) {
      // The next listing tries again.
    }
  }

  function addMessages(summaries, arrivedLive) {
    let added = false;
    for (const summary of summaries) {
      if (!isSummary(summary) || state.messages.has(summary.id)) continue;
      state.messages.set(summary.id, summary);
      // Unread: arrived while watching, or not yet read anywhere (here, a mail client).
      if (arrivedLive || summary.seen === false) state.unread.add(summary.id);
      if (!state.cursor || summary.id > state.cursor) state.cursor = summary.id;
      added = true;
    }
    if (added) renderList();
    // A new arrival may match the active search: ask the server again.
    if (added && state.matches) runSearch();
  }

  /** Runs the search box's query at the server (`?q=`, the same syntax as the API) and
   *  lists only what it found; an empty box lists everything again. */
  async function runSearch() {
    const query = state.query.trim();
    const address = state.address;
    if (!query || !address) {
      state.matches = null;
      renderList();
      return;
    }
    try {
      const listing = await api(`${inboxPath(address)}?q=${encodeURIComponent(query)}&limit=${LIST_LIMIT}`);
      if (address !== state.address || query !== state.query.trim()) return;
      state.matches = new Set(listing.messages.map((summary) => summary.id));
      ui.searchInput.setCustomValidity('');
    } catch (error) {
      if (address !== state.address) return;
      // A query that does not parse: the server's 400 says what and where.
      const why = error instanceof ApiError && error.status === 400 ? error.message : 'the search failed';
      ui.searchInput.setCustomValidity(why);
      notice(`Search: ${why}`, true);
      state.matches = new Set();
    }
    renderList();
  }

  function forget(id) {
    state.messages.delete(id);
    state.unread.delete(id);
    if (state.openId === id) closeReader();
  }

  // ---------------------------------------------------------------------------------
  // Drawing the list.

  function listItem(summary) {
    const button = node('button', { type: 'button' },
      node('span', { class: 'item-from' }, summary.from || '(no sender)'),
      node('time', { class: 'item-time', datetime: summary.received_at, title: localTime(summary.received_at) },
        ago(summary.received_at)),
      node('span', { class: 'item-subject' }, summary.subject || '(no subject)'),
      node('span', { class: 'item-preview' }, summary.preview || ''),
      node('span', { class: 'item-expiry', title: `Expires ${localTime(summary.expires_at)}` },
        expiresIn(summary.expires_at)));
    button.addEventListener('click', () => openMessage(summary.id));
    return node('li', { 'data-id': summary.id }, button);
  }

  function renderList() {
    const now = Date.now();
    for (const [id, summary] of state.messages) {
      if (Date.parse(summary.expires_at) <= now) forget(id);
    }
    const ordered = [...state.messages.values()]
      .filter((summary) => !state.matches || state.matches.has(summary.id))
      .sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    for (const [id, item] of state.items) {
      if (!state.messages.has(id) || (state.matches && !state.matches.has(id))) {
        item.remove();
        state.items.delete(id);
      }
    }
    // Insert new items in place without moving the others, so focus stays where it is.
    let next = ui.list.firstChild;
    for (const summary of ordered) {
      let item = state.items.get(summary.id);
      if (!item) {
        item = listItem(summary);
        state.items.set(summary.id, item);
      }
      if (item === next) next = next.nextSibling;
      else ui.list.insertBefore(item, next);
      item.classList.toggle('new', state.unread.has(summary.id));
      const button = item.firstChild;
      button.setAttribute('aria-current', summary.id === state.openId ? 'true' : 'false');
      button.querySelector('.item-time').textContent = ago(summary.received_at);
      button.querySelector('.item-expiry').textContent = expiresIn(summary.expires_at);
    }
    const total = ordered.length;
    if (!state.address) {
      ui.count.textContent = 'No address yet';
      ui.emptyHint.textContent = 'Open or create an address to see its mail here.';
    } else {
      const counted = total === 1 ? '1 message' : `${total} messages`;
      ui.count.textContent = state.matches ? `${counted} found` : counted;
      ui.emptyHint.textContent = state.matches
        ? 'Nothing matches the search.'
        : 'No mail yet. New messages show up here by themselves.';
      ui.readerEmptyText.textContent = total ? 'Pick a message to read it.' : `Mail to ${state.address} shows up as it arrives.`;
    }
    ui.emptyHint.hidden = total > 0;
    const unread = state.unread.size;
    if (state.address) document.title = `${unread ? `(${unread}) ` : ''}${state.address} · Mayfly`;
  }

  // ---------------------------------------------------------------------------------
  // Reading a message.

  function closeReader() {
    state.openId = null;
    state.openMessage = null;
    ui.reader.hidden = true;
    ui.readerEmpty.hidden = false;
    ui.main.classList.remove('reading');
    ui.body.replaceChildren();
    for (const item of state.items.values()) item.firstChild.setAttribute('aria-current', 'false');
  }

  async function openMessage(id) {
    const address = state.address;
    state.openId = id;
    state.unread.delete(id);
    renderList();
    ui.reader.hidden = false;
    ui.readerEmpty.hidden = true;
    ui.main.classList.add('reading');
    ui.title.textContent = state.messages.get(id)?.subject || '(no subject)';
    ui.meta.replaceChildren();
    ui.attachments.hidden = true;
    ui.viewSwitch.hidden = true;
    ui.body.replaceChildren(node('p', { class: 'placeholder' }, 'Loading…'));
    ui.headerRows.replaceChildren();
    try {
      const message = await api(messagePath(address, id));
      if (state.openId !== id || state.address !== address) return;
      renderMessage(address, message);
    } catch (error) {
      if (state.openId !== id) return;
      if (error instanceof ApiError && error.status === 404) {
        forget(id);
        renderList();
        notice('That message is gone (expired or deleted).', true);
      } else {
        ui.body.replaceChildren(node('p', { class: 'placeholder' }, `Could not load it: ${error.message}`));
      }
    }
  }

  function headerValue(message, name) {
    const wanted = name.toLowerCase();
    const pair = (message.headers || []).find(([key]) => String(key).toLowerCase() === wanted);
    return pair ? String(pair[1]) : null;
  }

  function renderMessage(address, message) {
    state.openMessage = message;
    ui.title.textContent = message.subject || '(no subject)';
    const rows = [
      ['From', headerValue(message, 'From') || message.from || '(no sender)'],
      ['To', (message.to || []).join(', ')],
      ['Received', localTime(message.received_at)],
      ['Expires', `${localTime(message.expires_at)} (${expiresIn(message.expires_at).replace('expires ', '')})`],
    ];
    ui.meta.replaceChildren(...rows.filter(([, value]) => value)
      .flatMap(([name, value]) => [node('dt', null, name), node('dd', null, value)]),
    ...checkRows(message), ...codeRows(message));

    const base = messagePath(address, message.id);
    ui.raw.href = withToken(`${base}/raw`);
    ui.raw.setAttribute('download', `message-${message.id}.eml`);
    ui.raw.title = `The message as received (${formatSize(message.size)})`;

    const attachments = message.attachments || [];
    ui.attachmentList.replaceChildren(...attachments.map((attachment) => {
      const name = attachment.filename || `attachment-${attachment.index}`;
      return node('li', null, node('a', {
        href: withToken(`${base}/attachments/${attachment.index}`),
        download: name,
        title: `${name} (${attachment.content_type})`,
      }, `${name} `, node('small', null, `${attachment.content_type.split(';')[0]}, ${formatSize(attachment.size)}`)));
    }));
    ui.attachments.hidden = attachments.length === 0;

    ui.headerRows.replaceChildren(...(message.headers || []).map(([name, value]) =>
      node('tr', null, node('th', { scope: 'row' }, String(name)), node('td', null, String(value)))));

    const hasHtml = typeof message.html === 'string';
    const hasText = typeof message.text === 'string';
    ui.viewSwitch.hidden = !(hasHtml && hasText);
    showBody(hasHtml ? 'html' : 'text');
    if (ui.main.classList.contains('reading') && window.matchMedia('(max-width: 700px)').matches) {
      // The list (and the button that had focus) is hidden now: move focus to the message.
      ui.reader.scrollIntoView({ block: 'start' });
      ui.title.focus({ preventScroll: true });
    }
  }

  /** How a check's result looks: good, bad, or neither (none, neutral, temperror...). */
  function verdictClass(result) {
    if (result === 'pass') return 'badge good';
    if (['fail', 'softfail', 'permerror', 'policy'].includes(result)) return 'badge bad';
    return 'badge';
  }

  /** The sender checks as one badge per check, and rspamd's score, when the server made
   *  them (--verify-senders annotate, --rspamd). */
  function checkRows(message) {
    const rows = [];
    const auth = message.auth;
    if (auth) {
      const dkim = auth.dkim.length === 0 ? 'none'
        : (auth.dkim.find((check) => check.result === 'pass') || auth.dkim[0]).result;
      const checks = [['SPF', auth.spf.result], ['DKIM', dkim], ['DMARC', auth.dmarc.result],
        ['ARC', auth.arc.result], ['iprev', auth.iprev.result]];
      rows.push(node('dt', null, 'Checks'), node('dd', { class: 'badges' },
        ...checks.map(([name, result]) => node('span', {
          class: verdictClass(result), title: `${name}: ${result}`, 'data-check': name.toLowerCase(),
        }, `${name} ${result}`))));
    }
    const spam = message.spam;
    if (spam) {
      const top = spam.symbols.filter((symbol) => symbol.score !== 0).slice(0, 5)
        .map((symbol) => `${symbol.name} ${symbol.score}`).join(', ');
      rows.push(node('dt', null, 'Spam'), node('dd', { class: 'badges' }, node('span', {
        class: spam.is_spam ? 'badge bad' : 'badge good',
        title: top || 'no rule matched',
        'data-check': 'spam',
      }, `${spam.score.toFixed(1)} / ${spam.required_score.toFixed(1)}`), ` ${spam.action}`));
    }
    return rows;
  }

  /** The likeliest one-time code, with a button that copies it. */
  function codeRows(message) {
    const code = (message.codes || [])[0];
    if (!code) return [];
    const copy = node('button', { type: 'button', class: 'copy', title: 'Copy the code' }, 'Copy code');
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(code.value);
        notice(`Copied ${code.value}.`);
      } catch {
        notice('Could not copy: the browser refused the clipboard.', true);
      }
    });
    return [node('dt', null, 'Code'), node('dd', { class: 'code' }, node('code', null, code.value), ' ', copy)];
  }

  /** The document shown in the frame: the sanitized HTML behind a CSP of its own. */
  function mailDocument(html) {
    const origin = location.origin;
    // Images only from this server's attachment URLs (where the API points cid: images),
    // style only from mail.css and the message's own (sanitized) style attributes.
    const policy = [
      "default-src 'none'",
      `img-src ${origin}${API}/inboxes/`,
      `style-src ${origin}/static/mail.css`,
      "style-src-attr 'unsafe-inline'",
      "form-action 'none'",
      "base-uri 'none'",
    ].join('; ');
    return '<!doctype html><html><head><meta charset="utf-8">'
      + `<meta http-equiv="Content-Security-Policy" content="${policy}">`
      + '<meta name="referrer" content="no-referrer">'
      + '<base target="_blank">'
      + `<link rel="stylesheet" href="${origin}/static/mail.css">`
      + `</head><body>${html}</body></html>`;
  }

  /** A note when the server did not serve the message's HTML (too large or too costly to
   *  sanitize safely): the raw message still has it. */
  function omittedNote(message) {
    if (!message.html_omitted) return [];
    const why = message.html_omitted === 'too_large' ? 'too large' : 'too complex';
    return [node('p', { class: 'placeholder' },
      `The HTML part of this message is ${why} to show safely; the raw message has it.`)];
  }

  function showBody(kind) {
    const message = state.openMessage;
    if (!message) return;
    ui.viewHtml.setAttribute('aria-pressed', String(kind === 'html'));
    ui.viewText.setAttribute('aria-pressed', String(kind === 'text'));
    if (kind === 'html' && typeof message.html === 'string') {
      const frame = node('iframe', {
        title: 'Message body',
        // No allow-scripts and no allow-same-origin: the body runs nothing and is a
        // foreign origin to this page. Links may open in a new, unsandboxed tab.
        sandbox: 'allow-popups allow-popups-to-escape-sandbox',
        referrerpolicy: 'no-referrer',
      });
      frame.srcdoc = mailDocument(withTokenOnImages(message.html));
      ui.body.replaceChildren(frame);
    } else if (typeof message.text === 'string') {
      ui.body.replaceChildren(...omittedNote(message), node('pre', { tabindex: '0' }, message.text));
    } else if (message.html_omitted) {
      ui.body.replaceChildren(...omittedNote(message));
    } else {
      ui.body.replaceChildren(node('p', { class: 'placeholder' }, 'This message has no text.'));
    }
  }

  async function deleteOpen() {
    const id = state.openId;
    const address = state.address;
    if (!id) return;
    ui.del.disabled = true;
    try {
      await api(messagePath(address, id), { method: 'DELETE' });
      notice('Message deleted.');
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) {
        notice(`Could not delete it: ${error.message}`, true);
        return;
      }
    } finally {
      ui.del.disabled = false;
    }
    if (address !== state.address) return;
    const item = state.items.get(id);
    const nextItem = item && (item.nextSibling || item.previousSibling);
    forget(id);
    renderList();
    (nextItem ? nextItem.firstChild : ui.input).focus();
  }

  async function emptyInbox() {
    if (!state.address) return;
    if (!ui.empty.classList.contains('armed')) {
      ui.empty.classList.add('armed');
      ui.empty.textContent = 'Really empty?';
      state.emptyArmTimer = setTimeout(disarmEmpty, ARM_MS);
      return;
    }
    disarmEmpty();
    const address = state.address;
    try {
      await api(inboxPath(address), { method: 'DELETE' });
      if (address !== state.address) return;
      for (const id of [...state.messages.keys()]) forget(id);
      renderList();
      notice('Inbox emptied.');
    } catch (error) {
      notice(`Could not empty the inbox: ${error.message}`, true);
    }
  }

  function disarmEmpty() {
    clearTimeout(state.emptyArmTimer);
    ui.empty.classList.remove('armed');
    ui.empty.textContent = 'Empty inbox';
  }

  // ---------------------------------------------------------------------------------
  // Wiring.

  let searchTimer = null;
  ui.search.addEventListener('submit', (event) => {
    event.preventDefault();
    clearTimeout(searchTimer);
    state.query = ui.searchInput.value;
    runSearch();
  });
  ui.searchInput.addEventListener('input', () => {
    // Search as the user types, once they pause.
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      state.query = ui.searchInput.value;
      runSearch();
    }, 300);
  });

  ui.form.addEventListener('submit', (event) => {
    event.preventDefault();
    const address = normalizeAddress(ui.input.value);
    if (!address) {
      notice('Type a whole address, such as name@example.test.', true);
      ui.input.focus();
      return;
    }
    notice('');
    // A typed address has no token, unless it is the open one.
    openAddress(address, address === state.address ? state.token : null);
  });
  ui.create.addEventListener('click', createAddress);
  ui.copy.addEventListener('click', copyAddress);
  ui.empty.addEventListener('click', emptyInbox);
  ui.del.addEventListener('click', deleteOpen);
  ui.back.addEventListener('click', () => {
    const id = state.openId;
    closeReader();
    const item = id && state.items.get(id);
    if (item) item.firstChild.focus();
  });
  ui.viewHtml.addEventListener('click', () => showBody('html'));
  ui.viewText.addEventListener('click', () => showBody('text'));
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && state.openId && ui.main.classList.contains('reading')) ui.back.click();
  });
  window.addEventListener('hashchange', () => {
    const opened = fromHash();
    if (opened) openAddress(opened.address, opened.token);
  });
  setInterval(() => { if (state.address) renderList(); }, TICK_MS);

  const initial = fromHash();
  if (initial) openAddress(initial.address, initial.token);
  else renderList();
})();
