/* merchant-assist console, live pages: server-sent change notices refresh the queue and the ticket view in place
   (content is re-fetched through the page's own URL), desktop notifications and a sound, Ctrl+Enter to send, "/"
   quick replies, presence. Plain JS, no external assets; every page works without it. */
(function () {
  "use strict";

  function meta(name) {
    var tag = document.querySelector('meta[name="' + name + '"]');
    return tag ? tag.content : null;
  }

  var me = Number(meta("console-agent"));
  var ticketId = meta("console-ticket");
  var csrfInput = document.querySelector('input[name="csrf_token"]');
  var csrf = csrfInput ? csrfInput.value : "";
  var POLL_MS = 15000;
  var SOUND_KEY = "console.sound";

  // --- status indicator and notification controls -----------------------------------------------------------

  var controls = document.getElementById("live-controls");
  var indicator = document.createElement("span");
  indicator.className = "live-status";
  indicator.setAttribute("aria-live", "polite");
  controls && controls.appendChild(indicator);

  function setLive(connected) {
    indicator.textContent = connected ? "实时" : "已断开，每 15 秒刷新";
    indicator.className = "live-status " + (connected ? "live-on" : "live-off");
  }

  if (controls && "Notification" in window) {
    var notifyButton = document.createElement("button");
    notifyButton.type = "button";
    notifyButton.className = "link live-notify";
    var showPermission = function () {
      var granted = Notification.permission === "granted";
      notifyButton.textContent = granted ? "桌面通知已开启" : "开启桌面通知";
      notifyButton.disabled = granted || Notification.permission === "denied";
      if (Notification.permission === "denied") notifyButton.textContent = "桌面通知已被浏览器禁止";
    };
    notifyButton.addEventListener("click", function () {
      var asked = Notification.requestPermission(showPermission);
      if (asked && asked.then) asked.then(showPermission);
    });
    showPermission();
    controls.appendChild(notifyButton);
  }
  if (controls) {
    var soundLabel = document.createElement("label");
    soundLabel.className = "live-sound";
    var soundBox = document.createElement("input");
    soundBox.type = "checkbox";
    soundBox.checked = localStorage.getItem(SOUND_KEY) === "1";
    soundBox.addEventListener("change", function () {
      localStorage.setItem(SOUND_KEY, soundBox.checked ? "1" : "0");
      if (soundBox.checked) beep();
    });
    soundLabel.appendChild(soundBox);
    soundLabel.appendChild(document.createTextNode("提示音"));
    controls.appendChild(soundLabel);
  }

  var audio = null;
  function beep() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    try {
      audio = audio || new Context();
      var tone = audio.createOscillator();
      var gain = audio.createGain();
      tone.frequency.value = 880;
      gain.gain.value = 0.08;
      tone.connect(gain);
      gain.connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 0.18);
    } catch (e) { /* no sound then */ }
  }

  function ticketNumber(id) {
    var digits = String(id);
    while (digits.length < 6) digits = "0" + digits;
    return "T" + digits;
  }

  var notified = {};
  function alertAgent(title, key) {
    var now = Date.now();
    if (notified[key + title] && now - notified[key + title] < 3000) return;
    notified[key + title] = now;
    if (localStorage.getItem(SOUND_KEY) === "1") beep();
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    var shown = new Notification(title, { body: "工单 " + ticketNumber(key), tag: "ticket-" + key + "-" + title });
    shown.onclick = function () {
      window.focus();
      if (String(key) !== ticketId) location.href = "/console/tickets/" + key;
      shown.close();
    };
  }

  function maybeNotify(notice) {
    if (notice.kind !== "ticket" || notice.assignee_id !== me || notice.by === me) return;
    var actions = notice.actions || [];
    var here = String(notice.key) === ticketId && document.visibilityState === "visible" && document.hasFocus();
    if (actions.indexOf("assigned") >= 0) {
      alertAgent("新工单已分配给您", notice.key);
    } else if (actions.indexOf("merchant_message") >= 0 && !here) {
      alertAgent("商户发来新消息", notice.key);
    }
  }

  // --- re-fetching the page and swapping its live parts ------------------------------------------------------

  var fetching = false;
  var again = false;
  var timer = null;
  var lastRefresh = 0;
  var MIN_GAP_MS = ticketId ? 150 : 1000; // the queue hears of every ticket: at most one re-fetch a second

  function refreshSoon() {
    if (timer) return;
    var wait = Math.max(150, lastRefresh + MIN_GAP_MS - Date.now());
    timer = setTimeout(function () {
      timer = null;
      refresh();
    }, wait);
  }

  function refresh() {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    lastRefresh = Date.now();
    fetch(location.href, { credentials: "same-origin", headers: { "X-Live-Refresh": "1" } })
      .then(function (response) {
        if (!response.ok || response.url.indexOf("/console/login") >= 0) throw new Error("refresh " + response.status);
        return response.text();
      })
      .then(function (html) {
        swap(new DOMParser().parseFromString(html, "text/html"));
      })
      .catch(function () { /* the next notice or poll tries again */ })
      .then(function () {
        fetching = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  function swap(fresh) {
    var parts = document.querySelectorAll("[data-live-part]");
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i];
      var name = part.getAttribute("data-live-part");
      var replacement = fresh.querySelector('[data-live-part="' + name + '"]');
      if (!replacement) continue;
      var focused = document.activeElement;
      if (focused && focused.matches("input, textarea, select") && part.contains(focused)) continue; // being edited
      if (name === "transcript") {
        swapTranscript(part, replacement);
      } else if (part.innerHTML !== replacement.innerHTML) {
        part.innerHTML = replacement.innerHTML;
      }
    }
    watchDeliveries();
    // The reply box stays (draft, caret, focus); only whether it may be used follows the ticket.
    var controlsNow = document.querySelectorAll("#reply-form textarea, #reply-form button, #reply-form input");
    for (var j = 0; j < controlsNow.length; j++) {
      var field = controlsNow[j];
      var twin = field.name && fresh.querySelector('#reply-form [name="' + field.name + '"]');
      if (twin) field.disabled = twin.disabled;
    }
  }

  function swapTranscript(box, replacement) {
    if (box.innerHTML === replacement.innerHTML) return;
    var atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    var folded = box.querySelector("details.bot-turns");
    var open = folded ? folded.open : false;
    box.innerHTML = replacement.innerHTML;
    var foldedNow = box.querySelector("details.bot-turns");
    if (foldedNow) foldedNow.open = open;
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  // A reply still on its way to the merchant: look again every few seconds (for two minutes) until it is sent.
  var deliveryChecks = 0;
  function watchDeliveries() {
    var transcript = document.getElementById("transcript");
    if (!ticketId || !transcript || deliveryChecks >= 40) return;
    if (transcript.querySelector(".delivery-pending, .delivery-sending")) {
      deliveryChecks += 1;
      setTimeout(refreshSoon, 3000);
    }
  }

  // --- the notice stream, with polling while it is down -----------------------------------------------------

  var poller = null;
  function startPolling() {
    setLive(false);
    if (!poller) poller = setInterval(refresh, POLL_MS);
  }
  function stopPolling() {
    setLive(true);
    if (poller) {
      clearInterval(poller);
      poller = null;
      refresh(); // whatever happened while the stream was down
    }
  }

  var lastId = null;
  var downSince = null;
  function onNotice(event) {
    var notice;
    if (event.lastEventId) lastId = event.lastEventId;
    try {
      notice = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    maybeNotify(notice);
    if (notice.kind === "presence" && notice.agent_id === me) return; // my own page, nothing new to show
    if (notice.kind === "resync") {
      refreshSoon();
    } else if (ticketId) {
      if (String(notice.key) !== ticketId || notice.kind === "queue") return;
      deliveryChecks = 0;
      refreshSoon();
    } else if (notice.kind === "queue" || notice.kind === "presence") {
      refreshSoon();
    }
  }

  function connect() {
    if (!window.EventSource) {
      startPolling();
      return;
    }
    var seq = lastId || meta("console-seq");
    var source = new EventSource("/console/events" + (seq ? "?after=" + encodeURIComponent(seq) : ""));
    source.onopen = function () {
      clearTimeout(downSince);
      downSince = null;
      stopPolling();
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        startPolling(); // refused (e.g. logged out): poll, and try the stream again later
        setTimeout(connect, POLL_MS);
      } else if (!downSince) {
        // The browser reconnects by itself (resuming after the last notice); say so only when that takes a while.
        downSince = setTimeout(function () {
          downSince = null;
          startPolling();
        }, 3000);
      }
    };
    ["ticket", "queue", "presence", "resync"].forEach(function (kind) {
      source.addEventListener(kind, onNotice);
    });
  }

  indicator.textContent = "连接中…";
  indicator.className = "live-status";
  connect();
  if (!ticketId) setInterval(refresh, 60000); // SLA countdowns and presence that ran out

  // --- the ticket page: transcript, reply box, quick replies, presence --------------------------------------

  if (!ticketId) return;

  var box = document.getElementById("transcript");
  var form = document.getElementById("reply-form");
  var text = document.getElementById("reply-text");
  if (box) box.scrollTop = box.scrollHeight;
  watchDeliveries();
  if (form && location.hash !== "#reply") form.scrollIntoView({ block: "nearest" });

  function post(path, fields) {
    var body = new FormData();
    body.append("csrf_token", csrf);
    Object.keys(fields).forEach(function (name) {
      body.append(name, fields[name]);
    });
    return fetch(path, { method: "POST", body: body, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } })
      .catch(function () {});
  }

  // Presence: "open" every 10 s, typing while keys are pressed (at most every 3 s), gone when the page closes.
  var presencePath = "/console/tickets/" + ticketId + "/presence";
  var typingSince = 0;
  var typingReported = false;
  var idle = null;
  function report(typing) {
    typingReported = typing;
    post(presencePath, { typing: typing ? "1" : "0" });
  }
  report(false);
  setInterval(function () {
    report(typingReported && Date.now() - typingSince < 4000);
  }, 10000);
  window.addEventListener("pagehide", function () {
    var body = new FormData();
    body.append("csrf_token", csrf);
    body.append("leaving", "1");
    if (navigator.sendBeacon) navigator.sendBeacon(presencePath, body);
  });

  if (!form || !text) return;

  text.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !menu.open) {
      event.preventDefault();
      if (!text.disabled && text.value.trim()) {
        if (form.requestSubmit) form.requestSubmit();
        else form.submit();
      }
    }
  });
  text.addEventListener("input", function () {
    var now = Date.now();
    if (!typingReported || now - typingSince > 3000) {
      typingSince = now;
      report(true);
    }
    clearTimeout(idle);
    idle = setTimeout(function () {
      if (typingReported) report(false);
    }, 4000);
  });

  // Quick replies: "/" at the start or after a space opens a list filtered as one types; arrows + Enter insert.
  var cannedData = document.getElementById("canned-data");
  var canned = [];
  try {
    canned = JSON.parse(cannedData ? cannedData.textContent : "[]");
  } catch (e) {
    canned = [];
  }
  var menu = { open: false, start: 0, items: [], active: 0, list: null };

  function insertAt(start, end, value) {
    var before = text.value.slice(0, start);
    var after = text.value.slice(end);
    text.value = before + value + after;
    var caret = before.length + value.length;
    text.focus();
    text.setSelectionRange(caret, caret);
    text.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function closeMenu() {
    menu.open = false;
    if (menu.list) menu.list.hidden = true;
  }

  function renderMenu() {
    if (!menu.list) {
      menu.list = document.createElement("ul");
      menu.list.className = "canned-menu";
      menu.list.setAttribute("role", "listbox");
      menu.list.setAttribute("aria-label", "快捷回复");
      text.parentNode.insertBefore(menu.list, text.nextSibling);
      menu.list.addEventListener("mousedown", function (event) {
        var item = event.target.closest("li[data-index]");
        if (!item) return;
        event.preventDefault();
        choose(Number(item.getAttribute("data-index")));
      });
    }
    menu.list.innerHTML = "";
    if (!menu.items.length) {
      var none = document.createElement("li");
      none.className = "muted";
      none.textContent = canned.length ? "没有匹配的快捷回复" : "还没有快捷回复";
      menu.list.appendChild(none);
    }
    menu.items.forEach(function (item, index) {
      var row = document.createElement("li");
      row.setAttribute("role", "option");
      row.setAttribute("data-index", String(index));
      row.setAttribute("aria-selected", index === menu.active ? "true" : "false");
      if (index === menu.active) row.className = "active";
      var title = document.createElement("b");
      title.textContent = item.title;
      var preview = document.createElement("span");
      preview.className = "muted";
      preview.textContent = item.text.length > 60 ? item.text.slice(0, 60) + "…" : item.text;
      row.appendChild(title);
      row.appendChild(preview);
      menu.list.appendChild(row);
    });
    menu.list.hidden = false;
    var activeRow = menu.list.querySelector("li.active");
    if (activeRow && activeRow.scrollIntoView) activeRow.scrollIntoView({ block: "nearest" });
  }

  function choose(index) {
    var item = menu.items[index];
    if (!item) return;
    closeMenu();
    insertAt(menu.start, text.selectionStart, item.text);
  }

  text.addEventListener("input", function () {
    var caret = text.selectionStart;
    var typed = /(^|\s)\/([^\s\/]*)$/.exec(text.value.slice(0, caret));
    if (!typed) {
      closeMenu();
      return;
    }
    var query = typed[2].toLowerCase();
    menu.start = caret - typed[2].length - 1;
    menu.items = canned.filter(function (item) {
      return !query || (item.title + "\n" + item.text).toLowerCase().indexOf(query) >= 0;
    });
    menu.active = 0;
    menu.open = true;
    renderMenu();
  });

  text.addEventListener(
    "keydown",
    function (event) {
      if (!menu.open) return;
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        var step = event.key === "ArrowDown" ? 1 : -1;
        if (menu.items.length) menu.active = (menu.active + step + menu.items.length) % menu.items.length;
        renderMenu();
      } else if (event.key === "Enter" || event.key === "Tab") {
        if (!menu.items.length) return closeMenu();
        event.preventDefault();
        event.stopImmediatePropagation();
        choose(menu.active);
      } else if (event.key === "Escape") {
        event.preventDefault();
        closeMenu();
      }
    },
    true
  );
  text.addEventListener("blur", function () {
    setTimeout(closeMenu, 150);
  });

  // The no-JS picker (a GET that reloads the page with the filled reply) inserts in place instead.
  var picker = document.querySelector("form.canned-picker");
  if (picker) {
    picker.addEventListener("submit", function (event) {
      var select = picker.querySelector("select[name=canned]");
      var found = canned.filter(function (item) {
        return String(item.id) === select.value;
      })[0];
      if (!found || text.disabled) return;
      event.preventDefault();
      var start = text.selectionStart;
      var end = text.selectionEnd;
      insertAt(start, end, found.text);
    });
  }
})();
