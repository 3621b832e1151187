// The merchant web chat: send messages, show the bot's replies, and receive what agents send (server-sent events,
// polling when those fail). No framework, nothing loaded from elsewhere.
(function () {
  "use strict";
  var root = document.getElementById("chat");
  var log = document.getElementById("log");
  var form = document.getElementById("compose");
  var input = document.getElementById("text");
  var button = document.getElementById("send");
  var statusLine = document.getElementById("status");
  if (!root || !form || form.hidden) return;

  var base = root.getAttribute("data-base") || "/chat";
  var identity = root.getAttribute("data-query") || "";
  var signed = new URLSearchParams(identity);
  var storeKey = "ma_chat:" + (identity ? signed.get("integration") + ":" + signed.get("user_id") : "visitor");
  var POLL_MS = 3000;
  var KEEP = 200;
  var after = Number(readStore("localStorage", storeKey + ":after")) || 0;
  var transcript = [];
  var pollTimer = null;
  var source = null;
  var failures = 0;

  // Storage by name: merely reading window.localStorage throws in a frame whose site data is blocked.
  function readStore(storage, key) {
    try { return window[storage].getItem(key); } catch (e) { return null; }
  }

  function writeStore(storage, key, value) {
    try { window[storage].setItem(key, value); } catch (e) { /* blocked, private mode or full: the page works */ }
  }

  function url(path, params) {
    var parts = identity ? [identity] : [];
    Object.keys(params || {}).forEach(function (name) {
      parts.push(encodeURIComponent(name) + "=" + encodeURIComponent(params[name]));
    });
    return base + path + (parts.length ? "?" + parts.join("&") : "");
  }

  function setStatus(text) {
    statusLine.textContent = text;
  }

  function render(entry) {
    var item = document.createElement("li");
    item.className = "msg " + entry.kind;
    if (entry.who) {
      var who = document.createElement("span");
      who.className = "who";
      who.textContent = entry.who;
      item.appendChild(who);
    }
    var bubble = document.createElement("div");
    bubble.className = entry.kind === "system" ? "" : "bubble";
    bubble.textContent = entry.text;
    item.appendChild(bubble);
    if (entry.options && entry.options.length) {
      var options = document.createElement("div");
      options.className = "options";
      entry.options.forEach(function (option) {
        var choice = document.createElement("button");
        choice.type = "button";
        choice.textContent = option.label;
        choice.addEventListener("click", function () {
          send({ payload: option.payload }, option.label);
        });
        options.appendChild(choice);
      });
      item.appendChild(options);
    }
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
  }

  function add(kind, who, text, options) {
    var entry = { kind: kind, who: who, text: text, options: options || [] };
    render(entry);
    transcript.push(entry);
    transcript = transcript.slice(-KEEP);
    writeStore("sessionStorage", storeKey + ":log", JSON.stringify(transcript));
  }

  function restore() {
    var saved = readStore("sessionStorage", storeKey + ":log");
    if (!saved) return;
    try { transcript = JSON.parse(saved) || []; } catch (e) { transcript = []; }
    transcript.forEach(render);
  }

  function received(message) {
    if (!message || typeof message.id !== "number" || message.id <= after) return;
    after = message.id;
    writeStore("localStorage", storeKey + ":after", String(after));
    add("agent", "客服", message.text, message.options);
  }

  function detailOf(body) {
    if (body && typeof body.detail === "string") return body.detail;
    if (body && Array.isArray(body.detail) && body.detail.length) {
      var first = body.detail[0];
      if (first.type === "string_too_long") return "消息太长，请分几次发送。";
      return "消息格式不正确。";
    }
    return "";
  }

  function send(body, shown) {
    add("me", "", shown);
    button.disabled = true;
    fetch(url("/messages"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          add("system error", "", "发送失败：" + (detailOf(data) || "服务暂时不可用（" + response.status + "）"));
          return;
        }
        if (data.text || (data.options && data.options.length)) {
          add("bot", "助手", data.text, data.options);
        } else if (data.intent === "human") {
          add("system", "", "已转给客服，请稍候。");
        }
      });
    }).catch(function () {
      add("system error", "", "网络异常，消息可能未发出，请稍后重试。");
    }).then(function () {
      button.disabled = false;
    });
  }

  function poll() {
    fetch(url("/messages", { after: after }), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : []; })
      .then(function (messages) { (messages || []).forEach(received); })
      .catch(function () { setStatus("连接中断，正在重试…"); });
  }

  function startPolling() {
    if (pollTimer) return;
    setStatus("");
    poll();
    pollTimer = setInterval(poll, POLL_MS);
  }

  function listen() {
    if (!window.EventSource) { startPolling(); return; }
    source = new EventSource(url("/stream", { after: after }));
    source.onopen = function () { failures = 0; setStatus("在线"); };
    source.onmessage = function (event) {
      try { received(JSON.parse(event.data)); } catch (e) { /* a malformed event is skipped */ }
    };
    source.onerror = function () {
      failures += 1;
      if (source.readyState === EventSource.CLOSED || failures >= 3) {
        source.close();
        source = null;
        startPolling();
      } else {
        setStatus("连接中断，正在重连…");
      }
    };
  }

  function grow() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, window.innerHeight * 0.3) + "px";
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || button.disabled) return;
    input.value = "";
    grow();
    send({ text: text }, text);
    input.focus();
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  });
  input.addEventListener("input", grow);

  restore();
  listen();
})();
