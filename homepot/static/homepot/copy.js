// Copy buttons: <button data-copy-target="ID"> copies the text of element ID.
// A static file because the CSP blocks inline script. The Clipboard API needs a
// secure context (https or localhost); lab servers on plain http fall back to
// selecting the text and execCommand("copy").
"use strict";

(function () {
  function selectText(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copyBySelection(element) {
    selectText(element);
    return document.execCommand("copy");
  }

  async function copyText(element) {
    const text = element.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
    return copyBySelection(element);
  }

  function showStatus(button, message) {
    const status = button.parentElement.querySelector(".homepot-copy-status");
    if (status) {
      status.textContent = message;
    }
  }

  async function onCopyClick(event) {
    const button = event.currentTarget;
    const target = document.getElementById(button.dataset.copyTarget);
    if (!target) {
      return;
    }
    try {
      const copied = await copyText(target);
      showStatus(button, copied ? "Copied" : "Selected: press Ctrl+C");
    } catch (error) {
      selectText(target);
      showStatus(button, "Selected: press Ctrl+C");
    }
  }

  function init() {
    document.querySelectorAll("button[data-copy-target]").forEach(function (button) {
      button.addEventListener("click", onCopyClick);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
