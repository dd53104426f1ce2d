#include "mb_http.h"

const mb_route mb_routes_purchases[] = {
    {NULL, NULL, NULL, 0},
};
