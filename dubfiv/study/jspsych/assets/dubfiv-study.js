/*
 * dubfiv-study.js: the runtime of the dubfiv user-study page (jsPsych 8, plain ES2017).
 *
 * Written by dubfiv_export_user_study into public/ beside index.html and
 * experiment.json (see docs/jspsych.md). It
 *   1. fetches experiment.json (format "dubfiv-jspsych/1": what participants see,
 *      without answers);
 *   2. opens a session with one backend:
 *        preview    ?preview=1 in the URL (arm: ?arm=<id>, else random); saves nothing;
 *        JATOS      a global `jatos` (jatos.js); results via jatos.submitResultData;
 *        collector  POST api/sessions answers JSON (dubfiv_study_serve);
 *      without any of them it shows an error page;
 *   3. runs the pages as a jsPsych timeline, saving each page's record as soon as the
 *      page is done, and ends the session (a redirect, or a closing message).
 *
 * Records (the contract of dubfiv/study/jspsych/records.py): one jsPsych trial record
 * per page with dubfiv_participant, dubfiv_arm, dubfiv_mode, dubfiv_started (ISO UTC),
 * PROLIFIC_PID / STUDY_ID / SESSION_ID where given (all added with
 * jsPsych.data.addProperties), dubfiv_page (the page's name), dubfiv_answers
 * ({tag: 1-based choice}) and, on the last record only, dubfiv_end (finished,
 * declined, device, comprehension); plus jsPsych's rt (time on the page, ms),
 * time_elapsed (ms since the first page), trial_type, trial_index.
 *
 * DOM contract (a test driver clicks through it):
 *   - each page's content is <div class="dubfiv-page" data-page="<page name>">;
 *   - question pages (survey-html-form) hold <input type="radio" name="<tag>"
 *     value="<1-based choice>" required>; their button is #jspsych-survey-html-form-next;
 *   - text pages (html-button-response) have exactly one button, .jspsych-btn;
 *   - the end of the study is <div class="dubfiv-page" data-page="ended"
 *     data-end="finished|declined|device|comprehension|refused|error">;
 *   - window.dubfivStudy = {mode, arm, participant} once the session is known.
 */
(function () {
  "use strict";

  var FORMAT = "dubfiv-jspsych/1";
  var PROLIFIC_FIELDS = ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"];
  var SAVE_TRIES = 4;            // a failed save is tried this often in all ...
  var SAVE_BACKOFF_MS = 500;     // ... waiting 0.5 s, 1 s, 2 s between the tries
  var PRELOAD_MAX_MS = 30000;    // a page's images get this long to load
  var BATCH_KEY = "dubfiv_arm_counts";  // JATOS batch session: {arm id: participants}

  var NO_BACKEND_HTML =
    "<p>This study page cannot run on its own: it must be served by the study's server " +
    "(<code>dubfiv_study_serve</code>) or by JATOS, which store the answers.</p>" +
    "<p>Researchers: add <code>?preview=1</code> to the address to try the study " +
    "without saving anything.</p>";

  /** An end of the study before or instead of the pages (refused, error, ...). */
  function Ended(reason, html) {
    this.reason = reason;
    this.html = html;
  }

  // ------------------------------------------------------------------ small helpers

  function esc(text) {
    return String(text === undefined || text === null ? "" : text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  /** FNV-1a, 32 bit, of the UTF-8 bytes of `text`, as 8 hex digits (records.check_hash). */
  function fnv1a(text) {
    var bytes = new TextEncoder().encode(text);
    var h = 0x811c9dc5;
    for (var i = 0; i < bytes.length; i++) {
      h ^= bytes[i];
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    return ("00000000" + h.toString(16)).slice(-8);
  }

  /**
   * The order 0..n-1 shuffled by `seed` (the participant id), the same on every load:
   * a Fisher-Yates shuffle whose step i swaps i with j = fnv1a("<seed>:order:<i>") mod (i+1).
   */
  function seededOrder(n, seed) {
    var order = [];
    for (var k = 0; k < n; k++) order.push(k);
    for (var i = n - 1; i > 0; i--) {
      var j = parseInt(fnv1a(seed + ":order:" + i), 16) % (i + 1);
      var t = order[i]; order[i] = order[j]; order[j] = t;
    }
    return order;
  }

  function randomId() {
    var bytes = new Uint8Array(8);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  function nowIso() {
    return new Date().toISOString();
  }

  /** The Prolific fields given by `lookup(name)` (only those with a value). */
  function prolificParams(lookup) {
    var out = {};
    PROLIFIC_FIELDS.forEach(function (name) {
      var value = lookup(name);
      if (typeof value === "string" && value !== "") out[name] = value;
    });
    return out;
  }

  function storageGet(key) {
    try { return window.localStorage.getItem(key); } catch (err) { return null; }
  }

  function storageSet(key, value) {
    try { window.localStorage.setItem(key, value); } catch (err) { /* private mode */ }
  }

  // ------------------------------------------------------------------ display

  function displayElement(jsPsych) {
    var inner = jsPsych && jsPsych.getDisplayElement ? jsPsych.getDisplayElement() : null;
    return inner || document.getElementById("dubfiv-display") || document.body;
  }

  /** The closing page (contract: data-page="ended" and data-end=<reason>). */
  function showEnded(jsPsych, reason, html) {
    displayElement(jsPsych).innerHTML = '<div class="dubfiv-page" data-page="ended" ' +
      'data-end="' + esc(reason) + '">' + html + "</div>";
  }

  function showBanner(html) {
    var banner = document.getElementById("dubfiv-banner");
    if (!banner) return;
    banner.innerHTML = html;
    banner.hidden = false;
  }

  // ------------------------------------------------------------------ page HTML

  /**
   * Wraps everything the plugin put on the screen (content, radios and button) into
   * <div class="dubfiv-page" data-page="<name>"> (the trial's on_load: the plugin has
   * drawn the page and bound its button already, moving the nodes keeps that).
   */
  function wrapPage(jsPsych, name) {
    var display = displayElement(jsPsych);
    var wrapper = document.createElement("div");
    wrapper.className = "dubfiv-page";
    wrapper.setAttribute("data-page", name);
    while (display.firstChild) wrapper.appendChild(display.firstChild);
    display.appendChild(wrapper);
  }

  /** One <img> shown `display_width` CSS px wide (experiment.json's image entry). */
  function imageTag(img) {
    var size = img.width && img.height ?
      ' width="' + img.width + '" height="' + img.height + '"' : "";
    return '<img src="' + esc(img.src) + '" alt="' + esc(img.alt) + '"' + size +
      ' style="width:' + img.display_width + 'px">';
  }

  /** A page of experiment.json: title, HTML text, images (a labelled table for a grid). */
  function pageHtml(page, heading) {
    var h = heading || "h3";
    var parts = ["<" + h + ">" + esc(page.title) + "</" + h + ">"];
    if (page.text) parts.push("<div>" + page.text + "</div>");
    var grid = page.grid;
    if (!grid) {
      page.images.forEach(function (img) {
        parts.push("<figure>" + imageTag(img) +
          (img.caption ? "<figcaption>" + esc(img.caption) + "</figcaption>" : "") +
          "</figure>");
      });
      return parts.join("\n");
    }
    var rows = ["<div class=\"dubfiv-grid\"><table>"];
    if (grid.col_labels.length) {
      var head = grid.row_labels.length ? "<th></th>" : "";
      grid.col_labels.forEach(function (label) { head += "<th>" + esc(label) + "</th>"; });
      rows.push("<tr>" + head + "</tr>");
    }
    for (var r = 0; r < grid.rows; r++) {
      var cells = grid.row_labels.length ? "<th>" + esc(grid.row_labels[r]) + "</th>" : "";
      for (var c = 0; c < grid.cols; c++) {
        var img = page.images[r * grid.cols + c];
        cells += "<td>" + imageTag(img) +
          (img.caption ? "<br><span>" + esc(img.caption) + "</span>" : "") + "</td>";
      }
      rows.push("<tr>" + cells + "</tr>");
    }
    rows.push("</table></div>");
    return parts.concat(rows).join("\n");
  }

  /** A single-choice question: radios named `tag` with values 1..k. */
  function choiceQuestion(tag, questionHtml, choices) {
    var out = '<div class="dubfiv-question" data-tag="' + esc(tag) + '">' + questionHtml;
    choices.forEach(function (choice, i) {
      out += '<label><input type="radio" name="' + esc(tag) + '" value="' + (i + 1) +
        '" required> ' + esc(choice) + "</label>";
    });
    return out + "</div>";
  }

  function checkQuestion(check) {
    return choiceQuestion(check.tag, check.text, check.choices);
  }

  /**
   * A matrix: one row per attribute (rows in `order`), one radio per choice; the row of
   * attribute i (0-based, study order) is named <prefix>_<i+1>.
   */
  function matrixQuestion(prefix, question, labels, order) {
    var head = "<tr><th></th>" + question.choices.map(function (choice) {
      return '<th scope="col">' + esc(choice) + "</th>";
    }).join("") + "</tr>";
    var body = order.map(function (i) {
      var name = prefix + "_" + (i + 1);
      return '<tr data-row="' + esc(name) + '"><th scope="row">' + esc(labels[i]) + "</th>" +
        question.choices.map(function (choice, j) {
          return '<td><input type="radio" name="' + name + '" value="' + (j + 1) +
            '" required aria-label="' + esc(labels[i] + ": " + choice) + '"></td>';
        }).join("") + "</tr>";
    }).join("");
    return '<div class="dubfiv-question" data-tag="' + prefix + '">' + question.question +
      '<table class="dubfiv-matrix">' + head + body + "</table></div>";
  }

  function imagesOf(pages) {
    var out = [];
    pages.forEach(function (page) {
      page.images.forEach(function (img) { out.push(img.src); });
    });
    return out;
  }

  // ------------------------------------------------------------------ backends

  /**
   * A session, whatever the backend:
   *   {mode, participant, arm, started, params (Prolific fields), savedPages (Set of page
   *    names already stored), elapsedMs (ms of earlier visits), endReason (of a stored
   *    last record, else null),
   *    save(page, record) -> Promise (rejects when the page could not be stored),
   *    end(reason) -> Promise<{html, leave: function or null}>}
   * `leave` navigates away (a redirect) after the closing message is shown.
   */

  function previewSession(exp, urlVariable) {
    var armIds = Object.keys(exp.arms);
    var wanted = urlVariable("arm");
    if (wanted && !Object.prototype.hasOwnProperty.call(exp.arms, wanted)) {
      throw new Ended("error", "<p>Preview: this study has no arm <code>" + esc(wanted) +
        "</code>; its arms are " + armIds.map(function (a) {
          return "<code>" + esc(a) + "</code>";
        }).join(", ") + ".</p>");
    }
    var arm = wanted || armIds[Math.floor(Math.random() * armIds.length)];
    showBanner("Preview: nothing is saved (arm <code>" + esc(arm) + "</code>).");
    return {
      mode: "preview", participant: "preview-" + randomId(), arm: arm, started: nowIso(),
      params: prolificParams(urlVariable), savedPages: new Set(), elapsedMs: 0,
      endReason: null,
      save: function () { return Promise.resolve(); },
      end: function (reason) {
        var html = reason === "finished" ? exp.end_text : exp.early_end[reason];
        if (reason === "finished" && exp.prolific) {
          html += "<p><i>Preview: a participant would now be sent back to Prolific.</i></p>";
        }
        return Promise.resolve({html: html, leave: null});
      },
    };
  }

  /** The least used arm of the batch (ties at random) and the counts with it added. */
  function leastUsedArm(armIds, counts) {
    var least = Infinity;
    armIds.forEach(function (a) { least = Math.min(least, counts[a] || 0); });
    var ties = armIds.filter(function (a) { return (counts[a] || 0) === least; });
    return ties[Math.floor(Math.random() * ties.length)];
  }

  function batchCounts() {
    var stored = jatos.batchSession && jatos.batchSession.get(BATCH_KEY);
    var counts = {};
    if (stored && typeof stored === "object") {
      Object.keys(stored).forEach(function (a) {
        var n = Number(stored[a]);
        if (isFinite(n) && n >= 0) counts[a] = n;
      });
    }
    return counts;
  }

  /**
   * Balanced assignment through JATOS' batch session: take the least used arm and count
   * it (retried when another participant changed the counts at the same moment).
   */
  async function jatosArm(armIds) {
    for (var attempt = 0; attempt < 5; attempt++) {
      var counts = batchCounts();
      var arm = leastUsedArm(armIds, counts);
      counts[arm] = (counts[arm] || 0) + 1;
      try {
        await Promise.resolve(jatos.batchSession.set(BATCH_KEY, counts));
        return arm;
      } catch (err) {
        await sleep(100 * (attempt + 1) + Math.random() * 100);
      }
    }
    console.warn("dubfiv: could not count the arm in the batch session");
    return leastUsedArm(armIds, batchCounts());
  }

  async function retried(work, what) {
    var lastError = null;
    for (var attempt = 0; attempt < SAVE_TRIES; attempt++) {
      if (attempt > 0) await sleep(SAVE_BACKOFF_MS * Math.pow(2, attempt - 1));
      try {
        return await work();
      } catch (err) {
        lastError = err;
        if (err && err.final) break;
      }
    }
    throw new Error(what + ": " + (lastError && lastError.message ? lastError.message :
      String(lastError)));
  }

  /**
   * JATOS: starts in jatos.onLoad; after every page all records so far go to
   * jatos.submitResultData (as one JSON array text); finishers with a
   * prolific_completion_url in the study input are sent there with
   * jatos.endStudyAndRedirect, everyone else sees the closing text and the study ends
   * with jatos.endStudyAjax (jatos.endStudy where that is missing).
   */
  async function jatosSession(exp) {
    await new Promise(function (resolve) { jatos.onLoad(resolve); });
    var query = jatos.urlQueryParameters || {};
    var arm = await jatosArm(Object.keys(exp.arms));
    var records = [];
    return {
      mode: "jatos", participant: randomId(), arm: arm, started: nowIso(),
      params: prolificParams(function (name) { return query[name]; }),
      savedPages: new Set(), elapsedMs: 0, endReason: null,
      save: function (page, record) {
        records.push(record);
        var text = JSON.stringify(records);
        return retried(function () {
          return Promise.resolve(jatos.submitResultData(text));
        }, "JATOS did not store the results");
      },
      end: function (reason) {
        var input = jatos.studyJsonInput || {};
        var url = typeof input.prolific_completion_url === "string" ?
          input.prolific_completion_url : "";
        var message = "dubfiv_end: " + reason;
        if (reason === "finished" && url) {
          return Promise.resolve({
            html: exp.end_text + "<p>You are being sent back to Prolific&hellip;</p>",
            leave: function () { jatos.endStudyAndRedirect(url, true, message); },
          });
        }
        var html = reason === "finished" ? exp.end_text : exp.early_end[reason];
        var end = typeof jatos.endStudyAjax === "function" ? jatos.endStudyAjax : jatos.endStudy;
        return Promise.resolve({
          html: html,
          leave: function () { end.call(jatos, reason === "finished", message); },
        });
      },
    };
  }

  /** The JSON body of a response, or undefined when it is not JSON (a static host). */
  async function jsonBody(response) {
    var type = response.headers.get("Content-Type") || "";
    if (type.indexOf("json") < 0) return undefined;
    try { return await response.json(); } catch (err) { return undefined; }
  }

  /**
   * POST `body` as JSON to the collector; retried on network errors, 5xx, 408 and 429.
   * Resolves to the answer's JSON; rejects with {final: true} on other refusals.
   */
  function postJson(url, body, token, what) {
    return retried(async function () {
      var headers = {"Content-Type": "application/json"};
      if (token) headers.Authorization = "Bearer " + token;
      var response = await fetch(url, {method: "POST", headers: headers,
                                       body: JSON.stringify(body)});
      if (response.ok) return (await jsonBody(response)) || {};
      var error = new Error("HTTP " + response.status);
      error.final = !(response.status >= 500 || response.status === 408 ||
                      response.status === 429);
      throw error;
    }, what);
  }

  /**
   * The collector (dubfiv_study_serve): POST api/sessions opens or resumes the session
   * (its token is kept in localStorage, keyed by the experiment's salt and the
   * PROLIFIC_PID); returns null when no collector answers (no JSON).
   */
  async function collectorSession(exp, urlVariable) {
    var params = prolificParams(urlVariable);
    var key = "dubfiv:" + exp.salt + ":" + (params.PROLIFIC_PID || "");
    var request = {token: storageGet(key)};
    PROLIFIC_FIELDS.forEach(function (f) { request[f] = params[f] || null; });
    var response;
    try {
      response = await fetch("api/sessions", {method: "POST",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify(request)});
    } catch (err) {
      return null;
    }
    var body = await jsonBody(response);
    if (body === undefined) return null;
    if (response.status === 403) {
      throw new Ended("refused", body.html || "<p>You cannot take part in this study again.</p>");
    }
    if (!response.ok || typeof body.participant !== "string" || typeof body.token !== "string") {
      throw new Ended("error", "<p>The study server could not start your session (HTTP " +
        response.status + "). Please try again later.</p>");
    }
    storageSet(key, body.token);
    var saved = Array.isArray(body.saved) ? body.saved : [];
    var base = "api/sessions/" + encodeURIComponent(body.participant);
    var started = null;
    var endReason = null;
    saved.forEach(function (r) {
      if (!started && typeof r.dubfiv_started === "string") started = r.dubfiv_started;
      if (typeof r.dubfiv_end === "string") endReason = r.dubfiv_end;
    });
    return {
      mode: "collector", participant: body.participant, arm: body.arm,
      started: started || nowIso(), params: params,
      savedPages: new Set(saved.map(function (r) { return r.dubfiv_page; })),
      elapsedMs: Number(body.elapsed_ms) || 0, endReason: endReason,
      save: function (page, record) {
        return postJson(base + "/pages", {page: page, records: [record]}, body.token,
                        "the server did not store the page");
      },
      end: async function (reason) {
        var answer = await postJson(base + "/end", {end: reason}, body.token,
                                    "the server did not close the session");
        var redirect = typeof answer.redirect === "string" ? answer.redirect : null;
        var html = answer.html || (reason === "finished" ? exp.end_text : exp.early_end[reason]);
        return {html: html, leave: redirect ? function () { window.location.assign(redirect); }
          : null};
      },
    };
  }

  /** The session of this visit: preview, JATOS, collector (in this order), else an error. */
  async function openSession(exp, urlVariable) {
    if (urlVariable("preview") === "1") return previewSession(exp, urlVariable);
    if (typeof jatos !== "undefined") return jatosSession(exp);
    var session = await collectorSession(exp, urlVariable);
    if (!session) throw new Ended("error", NO_BACKEND_HTML);
    if (!Object.prototype.hasOwnProperty.call(exp.arms, session.arm)) {
      throw new Ended("error", "<p>The study server assigned an arm this page does not " +
        "know; please tell the researchers.</p>");
    }
    return session;
  }

  // ------------------------------------------------------------------ pages

  /** Answers of a survey-html-form response as numbers ({tag: 1-based choice}). */
  function numbers(response) {
    var out = {};
    Object.keys(response || {}).forEach(function (tag) {
      out[tag] = parseInt(response[tag], 10);
    });
    return out;
  }

  function isOpen(ctx) {
    return !ctx.state.endReason && !ctx.state.error;
  }

  /**
   * After a page (the trial's on_finish, awaited by jsPsych): record its answers and, if
   * the study ends here, why; then store the record before the next page shows.
   */
  async function finishPage(ctx, name, data, answers, endReason) {
    data.dubfiv_answers = answers;
    if (endReason) {
      data.dubfiv_end = endReason;
      ctx.state.endReason = endReason;
    }
    if (typeof data.time_elapsed === "number") data.time_elapsed += ctx.session.elapsedMs;
    delete data.stimulus;  // the page's HTML: it is in experiment.json already
    displayElement(ctx.jsPsych).innerHTML = '<p class="dubfiv-saving">Saving&hellip;</p>';
    try {
      await ctx.session.save(name, JSON.parse(JSON.stringify(data)));
    } catch (err) {
      console.warn("dubfiv: " + (err && err.message ? err.message : err));
      ctx.state.error = "<p>Your answers on this page could not be saved (" +
        esc(err && err.message ? err.message : err) + "). Your answers up to the " +
        "previous page are safe. Please check your internet connection and reload this " +
        "page to go on from there.</p>";
    }
  }

  function preloadTrial(srcs) {
    return {type: jsPsychPreload, images: srcs, show_progress_bar: false,
            continue_after_error: true, max_load_time: PRELOAD_MAX_MS,
            message: "<p>Loading&hellip;</p>"};
  }

  /** A page in the timeline: its images first, then the page; skipped once the study
   * ended and when a resumed session has stored it already. */
  function pageNode(ctx, name, trial, images) {
    var timeline = images && images.length ? [preloadTrial(images), trial] : [trial];
    return {timeline: timeline, conditional_function: function () {
      return isOpen(ctx) && !ctx.session.savedPages.has(name);
    }};
  }

  function textPage(ctx, name, html, images, button) {
    return pageNode(ctx, name, {
      type: jsPsychHtmlButtonResponse, stimulus: html,
      choices: [button || ctx.exp.buttons.next], data: {dubfiv_page: name},
      on_load: function () { wrapPage(ctx.jsPsych, name); },
      on_finish: function (data) {
        return finishPage(ctx, name, data, {}, name === "end" ? "finished" : null);
      },
    }, images);
  }

  /** A question page; `judge(answers)` names the end reason when the study ends here. */
  function formPage(ctx, name, html, images, judge) {
    return pageNode(ctx, name, {
      type: jsPsychSurveyHtmlForm, html: html,
      button_label: ctx.exp.buttons.next, data: {dubfiv_page: name},
      on_load: function () { wrapPage(ctx.jsPsych, name); },
      on_finish: function (data) {
        var answers = numbers(data.response);
        return finishPage(ctx, name, data, answers, judge ? judge(answers) : null);
      },
    }, images);
  }

  function consentNode(ctx) {
    var exp = ctx.exp;
    var html = exp.consent.text +
      choiceQuestion("consent", exp.consent.question, exp.consent.choices) +
      (exp.device ? choiceQuestion("device", exp.device.question, exp.device.choices) : "");
    return formPage(ctx, "consent", html, [], function (answers) {
      if (answers.consent !== 1) return "declined";
      if (exp.device && answers.device !== 1) return "device";
      return null;
    });
  }

  function tutorialNodes(ctx) {
    var tutorial = ctx.exp.tutorial;
    if (!tutorial) return [];
    var nodes = [textPage(ctx, "tutorial_intro",
      "<h2>" + esc(tutorial.title) + "</h2>\n" + tutorial.intro, [])];
    tutorial.pages.forEach(function (page, i) {
      nodes.push(textPage(ctx, "tutorial_" + (i + 1), pageHtml(page), imagesOf([page])));
    });
    return nodes;
  }

  /** The comprehension page: a wrong answer (its hash differs) ends the study. */
  function comprehensionNodes(ctx) {
    var comp = ctx.exp.comprehension;
    if (!comp) return [];
    var html = pageHtml(comp.page) + comp.checks.map(checkQuestion).join("");
    return [formPage(ctx, "comprehension", html, imagesOf([comp.page]), function (answers) {
      var wrong = comp.checks.some(function (check) {
        return fnv1a(ctx.exp.salt + ":" + check.tag + ":" + answers[check.tag]) !== check.hash;
      });
      return wrong ? "comprehension" : null;
    })];
  }

  function conditionNodes(ctx) {
    var arm = ctx.exp.arms[ctx.session.arm];
    var nodes = [textPage(ctx, "condition_intro",
      "<h2>" + esc(arm.title) + "</h2>\n" + arm.intro, [])];
    arm.pages.forEach(function (page, i) {
      nodes.push(textPage(ctx, "explanation_" + (i + 1), pageHtml(page), imagesOf([page])));
    });
    return nodes;
  }

  /** The attribute page: the explanation again, relevance, attention check(s),
   * confidence; the rows in an order drawn from the participant id. */
  function attributesNode(ctx) {
    var exp = ctx.exp;
    var arm = exp.arms[ctx.session.arm];
    var labels = exp.attributes.labels;
    var order = seededOrder(labels.length, ctx.session.participant);
    var html = '<div class="dubfiv-recap"><h3>The explanation again, for reference</h3>' +
      arm.pages.map(function (page) { return pageHtml(page, "h4"); }).join("\n") + "</div>" +
      matrixQuestion("relevance", exp.attributes.relevance, labels, order) +
      exp.attention.attributes.map(checkQuestion).join("") +
      matrixQuestion("confidence", exp.attributes.confidence, labels, order);
    return formPage(ctx, "attributes", html, imagesOf(arm.pages), null);
  }

  function taskNodes(ctx) {
    var exp = ctx.exp;
    var nodes = [];
    exp.tasks.forEach(function (task, i) {
      (exp.attention.before_task[i] || []).forEach(function (check) {
        nodes.push(formPage(ctx, "check_" + check.tag, checkQuestion(check), [], null));
      });
      var question = exp.prediction.question + "<p>" + imageTag(task.image) + "</p>";
      nodes.push(formPage(ctx, "task_" + (i + 1),
        choiceQuestion("predict_" + task.key, question, exp.prediction.choices),
        [task.image.src], null));
    });
    return nodes;
  }

  /** The pages in the order of dubfiv/study/layout.py. */
  function buildTimeline(ctx) {
    return [consentNode(ctx)]
      .concat(tutorialNodes(ctx), comprehensionNodes(ctx), conditionNodes(ctx),
              [attributesNode(ctx)], taskNodes(ctx),
              [textPage(ctx, "end", ctx.exp.end_text, [], ctx.exp.buttons.finish)]);
  }

  // ------------------------------------------------------------------ start and end

  async function loadExperiment() {
    var response = await fetch("experiment.json", {cache: "no-store"});
    if (!response.ok) throw new Error("experiment.json: HTTP " + response.status);
    var exp = await response.json();
    if (!exp || exp.format !== FORMAT) {
      throw new Error("experiment.json is not of format " + FORMAT);
    }
    return exp;
  }

  function jsPsychLoaded() {
    return typeof initJsPsych === "function" &&
      typeof jsPsychHtmlButtonResponse !== "undefined" &&
      typeof jsPsychSurveyHtmlForm !== "undefined" && typeof jsPsychPreload !== "undefined";
  }

  /** After the last page (or a stored last page): end the session and say goodbye. */
  async function finishSession(ctx) {
    if (ctx.state.error) {
      showEnded(ctx.jsPsych, "error", ctx.state.error);
      return;
    }
    var reason = ctx.state.endReason || "finished";
    var closing;
    try {
      closing = await ctx.session.end(reason);
    } catch (err) {
      showEnded(ctx.jsPsych, "error", "<p>Your answers are saved, but the study could " +
        "not be closed (" + esc(err && err.message ? err.message : err) + "). Please " +
        "reload this page.</p>");
      return;
    }
    showEnded(ctx.jsPsych, reason, closing.html);
    if (closing.leave) closing.leave();
  }

  async function main() {
    var jsPsych = null;
    try {
      if (!jsPsychLoaded()) {
        throw new Ended("error", "<p>The study could not load its software (jsPsych). " +
          "Please check your internet connection and reload this page.</p>");
      }
      var exp = await loadExperiment();
      jsPsych = initJsPsych({display_element: document.getElementById("dubfiv-display")});
      var urlVariable = function (name) { return jsPsych.data.getURLVariable(name); };
      var session = await openSession(exp, urlVariable);
      window.dubfivStudy = {mode: session.mode, arm: session.arm,
                            participant: session.participant};
      jsPsych.data.addProperties(Object.assign({
        dubfiv_participant: session.participant, dubfiv_arm: session.arm,
        dubfiv_mode: session.mode, dubfiv_started: session.started,
      }, session.params));
      document.title = exp.title;
      var ctx = {exp: exp, session: session, jsPsych: jsPsych,
                 state: {endReason: session.endReason, error: null}};
      await jsPsych.run(buildTimeline(ctx));
      await finishSession(ctx);
    } catch (err) {
      if (err instanceof Ended) {
        showEnded(jsPsych, err.reason, err.html);
      } else {
        console.error(err);
        showEnded(jsPsych, "error", "<p>Something went wrong: " +
          esc(err && err.message ? err.message : err) + ". Please reload this page.</p>");
      }
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", main);
  } else {
    main();
  }
})();
