#include "mb_http.h"

const mb_route mb_routes_refund[] = {
    {NULL, NULL, NULL, 0},
};
