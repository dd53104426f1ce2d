# Copies the pinned Redoc bundle of tests/docs (`npm ci` there) next to the binary, where
# GET /docs/redoc.standalone.js reads it (DOCS_DIR). Without the npm install the build still
# succeeds and that route answers 404.   cmake -DIN=<bundle> -DOUT=<dir> -P copy_docs.cmake
#
# One change on the way: the sidebar's "API docs by Redocly" link shows a logo fetched from
# cdn.redoc.ly (no option turns it off). The page must work offline and fetch nothing from
# elsewhere, so that URL becomes an inline SVG (the link and its text stay).
if(EXISTS "${IN}")
  file(READ "${IN}" js)
  set(cdn "https://cdn.redoc.ly/redoc/logo-mini.svg")
  string(FIND "${js}" "${cdn}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "copy_docs.cmake: ${cdn} is not in ${IN} (a new Redoc? check the patch)")
  endif()
  set(svg "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='16' height='16'%3E%3Ccircle cx='8' cy='8' r='7' fill='%23888'/%3E%3C/svg%3E")
  string(REPLACE "${cdn}" "${svg}" js "${js}")
  file(MAKE_DIRECTORY "${OUT}")
  # Written only when it changed: no rebuild churn.
  set(old "")
  if(EXISTS "${OUT}/redoc.standalone.js")
    file(READ "${OUT}/redoc.standalone.js" old)
  endif()
  if(NOT old STREQUAL js)
    file(WRITE "${OUT}/redoc.standalone.js" "${js}")
  endif()
else()
  message(STATUS "no ${IN}: GET /docs has no bundle (npm ci in tests/docs, then build again)")
  file(REMOVE "${OUT}/redoc.standalone.js")
endif()
