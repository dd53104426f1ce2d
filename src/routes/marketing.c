#include "mb_http.h"

const mb_route mb_routes_marketing[] = {
    {NULL, NULL, NULL, 0},
};
