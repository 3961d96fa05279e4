// Hands a portal ticket to xpra's HTML5 client: the client reads its
// connection parameters from the URL query, else from sessionStorage
// (Utilities.getparam), and removes "password" from sessionStorage once
// it has read it. The ticket never appears in a URL.
(function () {
  "use strict";
  var d = document.getElementById("handoff");
  if (!d) { return; }
  try {
    sessionStorage.setItem("username", d.dataset.username);
    sessionStorage.setItem("password", d.dataset.ticket);
    sessionStorage.setItem("ssl", "true");
    // A ticket works once: a client that reconnected by itself would only
    // fail, and count toward its address's ban.
    sessionStorage.setItem("reconnect", "false");
    sessionStorage.removeItem("display");
    ["path", "server", "port", "encryption", "key"].forEach(function (k) { sessionStorage.removeItem(k); });
  } catch (e) {
    document.body.insertAdjacentText("beforeend", "This browser keeps no session storage: the client cannot be opened.");
    return;
  }
  d.removeAttribute("data-ticket");
  window.location.replace(d.dataset.client);
})();
