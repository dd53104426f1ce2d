#include "mb_err.h"

static const struct {
    int status;
    const char *code;
    const char *title;
} table[MB_E__COUNT] = {[MB_OK] = {200, "ok", "OK"},
#define MB_ERR_ROW(name, status, code, title) [MB_E_##name] = {status, code, title},
                        MB_ERR_MAP(MB_ERR_ROW)
#undef MB_ERR_ROW
};

int mb_err_status(mb_err e)
{
    return (e >= 0 && e < MB_E__COUNT) ? table[e].status : 500;
}

const char *mb_err_code(mb_err e)
{
    return (e >= 0 && e < MB_E__COUNT) ? table[e].code : "internal";
}

const char *mb_err_title(mb_err e)
{
    return (e >= 0 && e < MB_E__COUNT) ? table[e].title : "Internal error";
}
