#!/usr/bin/env bash
# Download the paper's released artifacts: the trained model and the two Two4Two datasets.
# Run with --help for usage. Safe to re-run: finished artifacts are skipped, partial
# downloads resume, and nothing that this script did not make is overwritten.
set -euo pipefail

BASE_URL_DEFAULT="https://f002.backblazeb2.com/file/iclr2022"
MODEL_ARCHIVE="do_users_benefit_from_interpretable_vision_model.tar.gz"
MODEL_DIRNAME="do_users_benefit_from_interpretable_vision_model"
BIASED_NAME="two4two_obj_color_and_spherical_finer_search_spherical_uniform_0.33_uniform_0.15"
UNBIASED_NAME="${BIASED_NAME}_unbiased"
SURVEY_FILE="ICLR2022_Export_Do_Users_Benefit_From_Interpretable_Vision.qsf"
MARKER=".dubfiv_download_complete"

usage() {
    cat <<EOF
Usage: $(basename "$0") [WHAT...] [OPTIONS]

Downloads the released artifacts of "Do Users Benefit From Interpretable Vision?"
(ICLR 2022), verifies their sizes against the server's, and unpacks them.

WHAT (default: --all):
  --model          the trained model (~2.7 GB) -> MODEL_DIR/${MODEL_DIRNAME}/
  --biased         the biased Two4Two dataset (~3.3 GB) -> DATA_DIR/${BIASED_NAME}/
  --unbiased       the unbiased Two4Two dataset (~1.9 GB) -> DATA_DIR/${UNBIASED_NAME}/
  --survey         the paper's Qualtrics survey export (.qsf) -> DATA_DIR/${SURVEY_FILE}
  --all            model, biased and unbiased datasets

OPTIONS:
  --data-dir DIR   where datasets are unpacked (default: data)
  --model-dir DIR  where the model run folder is unpacked (default: models)
  --base-url URL   download from a mirror (default: ${BASE_URL_DEFAULT};
                   also \$DUBFIV_ARTIFACTS_BASE_URL)
  --keep-archives  keep the downloaded archives after unpacking
  --dry-run        print what would be done, download nothing
  -h, --help       show this help

Behaviour:
  * idempotent: an artifact unpacked by this script (marker file ${MARKER}) is skipped;
  * downloads go to ARCHIVE.part, which a later run resumes (curl -C -), and are
    renamed to ARCHIVE once their size matches the server's Content-Length;
  * an existing ARCHIVE whose size differs from the server's, or an existing target
    folder that this script did not create, is never overwritten: the script stops
    and says what to move (only sizes are compared: no checksums are published).

Load the model afterwards with, e.g.:
  dubfiv_model_summary MODEL_DIR/${MODEL_DIRNAME}
EOF
}

die() { echo "download_artifacts.sh: error: $*" >&2; exit 1; }
say() { echo "download_artifacts.sh: $*"; }

DATA_DIR="data"
MODEL_DIR="models"
BASE_URL="${DUBFIV_ARTIFACTS_BASE_URL:-$BASE_URL_DEFAULT}"
KEEP=0
DRY=0
WANT_MODEL=0
WANT_BIASED=0
WANT_UNBIASED=0
WANT_SURVEY=0

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --model) WANT_MODEL=1 ;;
        --biased) WANT_BIASED=1 ;;
        --unbiased) WANT_UNBIASED=1 ;;
        --survey) WANT_SURVEY=1 ;;
        --all) WANT_MODEL=1; WANT_BIASED=1; WANT_UNBIASED=1 ;;
        --data-dir) [ $# -ge 2 ] || die "--data-dir needs a folder"; DATA_DIR="$2"; shift ;;
        --model-dir) [ $# -ge 2 ] || die "--model-dir needs a folder"; MODEL_DIR="$2"; shift ;;
        --base-url) [ $# -ge 2 ] || die "--base-url needs a URL"; BASE_URL="$2"; shift ;;
        --keep-archives) KEEP=1 ;;
        --dry-run) DRY=1 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
if [ $((WANT_MODEL + WANT_BIASED + WANT_UNBIASED + WANT_SURVEY)) -eq 0 ]; then
    WANT_MODEL=1; WANT_BIASED=1; WANT_UNBIASED=1
fi
BASE_URL="${BASE_URL%/}"
command -v curl >/dev/null 2>&1 || die "curl is not installed (apt-get install curl)"
command -v tar >/dev/null 2>&1 || die "tar is not installed"

# Size in bytes the server reports for URL (follows redirects; last Content-Length wins).
remote_size() {
    local size
    size=$(curl -sSIL "$1" 2>/dev/null | tr -d '\r' | awk 'tolower($1)=="content-length:" {n=$2} END {print n}')
    [ -n "$size" ] || die "could not read the size of $1 (offline? wrong --base-url?)"
    echo "$size"
}

file_size() { stat -c %s "$1"; }

# fetch URL ARCHIVE: download ARCHIVE into ARCHIVE.part (resuming a .part left by an
# interrupted run), verify its size, then rename it to ARCHIVE. An existing ARCHIVE is
# accepted only if its size is the server's; it is never appended to or replaced.
fetch() {
    local url="$1" archive="$2" part="$2.part" expected have
    expected=$(remote_size "$url")
    if [ -f "$archive" ]; then
        have=$(file_size "$archive")
        if [ "$have" -ne "$expected" ]; then
            die "$archive exists with $have bytes but the server's file has $expected: it is a different file; move it away and run again (if it is a partial download of an older version of this script, rename it to $part to resume)"
        fi
        say "$archive already downloaded ($expected bytes)"
        return 0
    fi
    if [ -f "$part" ]; then
        have=$(file_size "$part")
        if [ "$have" -gt "$expected" ]; then
            die "$part has $have bytes, more than the server's $expected: delete it and run again"
        fi
        say "resuming $archive at $have of $expected bytes"
    else
        say "downloading $url ($expected bytes)"
    fi
    if [ "$DRY" -eq 1 ]; then return 0; fi
    mkdir -p "$(dirname "$archive")"
    curl -fL --retry 3 -C - -o "$part" "$url" || die "download of $url failed; run again to resume"
    have=$(file_size "$part")
    [ "$have" -eq "$expected" ] || die "$part has $have bytes, expected $expected; run again to resume"
    mv "$part" "$archive"
}

# unpack ARCHIVE DEST_PARENT TARGET: unpack into DEST_PARENT, expecting folder TARGET.
unpack() {
    local archive="$1" parent="$2" target="$3" tmp
    if [ "$DRY" -eq 1 ]; then say "would unpack $archive into $parent"; return 0; fi
    tmp=$(mktemp -d "$parent/.unpack.XXXXXX")
    trap "rm -rf '$tmp'" EXIT
    tar -xf "$archive" -C "$tmp" || die "could not unpack $archive (corrupt? delete it and run again)"
    [ -d "$tmp/$(basename "$target")" ] || die "$archive does not contain $(basename "$target")/"
    touch "$tmp/$(basename "$target")/$MARKER"
    mv "$tmp/$(basename "$target")" "$target"
    rm -rf "$tmp"
    trap - EXIT
    if [ "$KEEP" -eq 0 ]; then rm -f "$archive"; fi
    say "unpacked $target"
}

# artifact ARCHIVE_NAME PARENT TARGET_NAME
artifact() {
    local name="$1" parent="$2" target="$2/$3"
    if [ -d "$target" ]; then
        if [ -f "$target/$MARKER" ]; then
            say "$target is present; skipping"
            return 0
        fi
        die "$target exists but was not unpacked by this script; move it away (or delete it) and run again"
    fi
    if [ "$DRY" -eq 0 ]; then mkdir -p "$parent"; fi
    fetch "$BASE_URL/$name" "$parent/$name"
    unpack "$parent/$name" "$parent" "$target"
}

if [ "$WANT_MODEL" -eq 1 ]; then artifact "$MODEL_ARCHIVE" "$MODEL_DIR" "$MODEL_DIRNAME"; fi
if [ "$WANT_BIASED" -eq 1 ]; then artifact "$BIASED_NAME.tar" "$DATA_DIR" "$BIASED_NAME"; fi
if [ "$WANT_UNBIASED" -eq 1 ]; then artifact "$UNBIASED_NAME.tar" "$DATA_DIR" "$UNBIASED_NAME"; fi
if [ "$WANT_SURVEY" -eq 1 ]; then
    if [ "$DRY" -eq 0 ]; then mkdir -p "$DATA_DIR"; fi
    fetch "$BASE_URL/$SURVEY_FILE" "$DATA_DIR/$SURVEY_FILE"
fi
say "done"
