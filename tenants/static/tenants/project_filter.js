// The API key form: offer only the chosen organization's projects (the server checks it too).
(function () {
  function filter() {
    var organization = document.getElementById("id_organization");
    var project = document.getElementById("id_project");
    if (!organization || !project) return;
    Array.prototype.forEach.call(project.options, function (option) {
      var owner = option.getAttribute("data-organization");
      var other = owner !== null && owner !== organization.value;
      option.hidden = other;
      option.disabled = other;
      if (other && option.selected) project.value = "";
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var organization = document.getElementById("id_organization");
    if (organization) organization.addEventListener("change", filter);
    filter();
  });
})();
