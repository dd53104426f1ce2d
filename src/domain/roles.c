/* The role matrix of DESIGN §2, in one table. */
#include "mb_auth.h"
#include "mb_domain.h"

#define GA MB_ROLE_GLOBAL_ADMIN
#define UA MB_ROLE_USER_ADMIN
#define AA MB_ROLE_ADMIN_AGENT
#define PA MB_ROLE_MPN_PARTNER_ADMIN
#define OP MB_ROLE_OPERATOR

static const struct {
    unsigned roles;
    const char *denied;
} matrix[MB_ACT__COUNT] = {
    [MB_ACT_READ] = {GA | PA | AA | UA | OP,
                     "Reading partner data needs one of the partner roles (Global admin, MPN "
                     "partner admin, Admin agent, User admin). Ask your Global admin to assign "
                     "you a role in Account settings."},
    [MB_ACT_PURCHASE] = {GA | PA | AA,
                         "Purchasing or renewing a package needs Global admin, MPN partner admin "
                         "or Admin agent. Ask your Global admin."},
    [MB_ACT_KEYS] = {GA | PA,
                     "Getting keys and activating software or cloud benefits needs Global admin "
                     "or MPN partner admin. Ask your Global admin."},
    [MB_ACT_ASSIGN_OTHERS] = {GA, "Assigning benefits to employees needs Global admin. Ask your "
                                  "Global admin."},
    [MB_ACT_TECHNICAL] = {GA | PA,
                          "Technical benefits are available to Global admin and MPN partner "
                          "admin only. Ask your Global admin."},
    [MB_ACT_MARKETING] = {GA | PA,
                          "Go-To-Market offers and the marketing contact need Global admin or "
                          "MPN partner admin. Ask your Global admin."},
    [MB_ACT_CANCEL] = {GA | PA,
                       "Requesting a cancellation needs Global admin or MPN partner admin. Ask "
                       "your Global admin."},
    [MB_ACT_MANAGE_USERS] = {GA | UA,
                             "Managing users needs Global admin or User admin. Ask your Global "
                             "admin."},
    [MB_ACT_AUDIT] = {GA | OP, "The audit trail is available to the Global admin. Ask your "
                               "Global admin."},
    [MB_ACT_OPERATE] = {OP, "This needs the program operator role."},
};

unsigned mb_action_roles(mb_action a)
{
    return (a >= 0 && a < MB_ACT__COUNT) ? matrix[a].roles : 0;
}

bool mb_roles_allow(unsigned roles, mb_action a)
{
    return (roles & mb_action_roles(a)) != 0;
}

const char *mb_action_denied_detail(mb_action a)
{
    return (a >= 0 && a < MB_ACT__COUNT) ? matrix[a].denied : "Not allowed.";
}
