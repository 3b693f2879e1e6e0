// Branchline controller pages: the only script. Forms marked data-confirm ask first.
"use strict";
document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});
