"""Admin forms (Flask-WTF, CSRF-protected). Per-locale fields are added per request."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    PasswordField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    URLField,
    widgets,
)
from wtforms.validators import DataRequired, Length, Optional

from app.events.models import EVENT_TYPES
from app.i18n.forms import FlaskForm  # WTForms messages from our catalogues
from app.preferences.views import CHANNEL_NAMES, FREQUENCY_LABELS
from app.topics.models import CHANNELS, FREQUENCIES

KIND_LABELS = {"marketing": _l("Marketing"), "transactional": _l("Transactional")}


def _frequency_choices() -> list[SelectChoice]:
    return [SelectChoice(f, FREQUENCY_LABELS[f]) for f in FREQUENCIES]


class LoginForm(FlaskForm):
    email = StringField(_l("Email"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])


class ActionForm(FlaskForm):
    """CSRF only: logout, archive, delete, enable, rotate, replay..."""


class MoveForm(FlaskForm):
    direction = SelectField(choices=[SelectChoice("up"), SelectChoice("down")],
                            validators=[DataRequired()])


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class TopicForm(FlaskForm):
    slug = StringField(_l("Slug"), validators=[Length(max=64)],
                       description=_l("Lowercase letters, digits, - and _. It cannot change "
                                      "later: links and the API use it."))
    kind = RadioField(_l("Kind"), choices=[SelectChoice(k, v) for k, v in KIND_LABELS.items()],
                      default="marketing",
                      validators=[DataRequired()])
    frequencies = MultiCheckboxField(_l("Frequencies offered"),
                                     choices=_frequency_choices(),
                                     default=["weekly"])
    default_frequency = SelectField(_l("Default frequency"),
                                    choices=_frequency_choices(),
                                    default="weekly")
    channels = MultiCheckboxField(_l("Channels offered"),
                                  choices=[SelectChoice(c, CHANNEL_NAMES[c]) for c in CHANNELS],
                                  default=["email"],
                                  description=_l("Subscribers choose among these for each "
                                                 "topic; SMS needs their mobile number."))


def topic_form(locales: list[str], **kwargs) -> TopicForm:
    """A topic form with a name and a description field for every locale."""

    class LocalisedTopicForm(TopicForm):
        pass

    for locale in locales:
        setattr(LocalisedTopicForm, f"name_{locale}",
                StringField(_l("Name"), validators=[Optional(), Length(max=200)]))
        setattr(LocalisedTopicForm, f"description_{locale}",
                TextAreaField(_l("Description"), validators=[Optional(), Length(max=2000)]))
    return LocalisedTopicForm(**kwargs)


class RoleForm(FlaskForm):
    slug = StringField(_l("Slug"), validators=[Length(max=64)],
                       description=_l("Lowercase letters, digits, - and _. It cannot change "
                                      "later: the API uses it."))


def role_form(locales: list[str], role_topic_ids: list[int] = (), **kwargs) -> RoleForm:
    """Names per locale and, for each of the role's topics, a default and benefit texts."""

    class LocalisedRoleForm(RoleForm):
        pass

    for locale in locales:
        setattr(LocalisedRoleForm, f"name_{locale}",
                StringField(_l("Name"), validators=[Optional(), Length(max=200)]))
    for rt_id in role_topic_ids:
        setattr(LocalisedRoleForm, f"default_{rt_id}", BooleanField(_l("Subscribed by default")))
        for locale in locales:
            setattr(LocalisedRoleForm, f"benefit_{rt_id}_{locale}",
                    TextAreaField(_l("Benefit"), validators=[Optional(), Length(max=1000)]))
    return LocalisedRoleForm(**kwargs)


class AddRoleTopicForm(FlaskForm):
    topic = SelectField(_l("Topic"), coerce=int, validators=[DataRequired()])


class SearchForm(FlaskForm):
    class Meta:
        csrf = False

    q = StringField(_l("Email or external id"), validators=[Optional(), Length(max=320)])


class EndpointForm(FlaskForm):
    """The URL itself is checked by the webhook service (absolute http(s), a host)."""

    url = URLField(_l("URL"), validators=[DataRequired(), Length(max=2000)])
    description = StringField(_l("Description"), validators=[Optional(), Length(max=255)])
    events = MultiCheckboxField(_l("Event types"),
                                description=_l("None ticked: every event type."),
                                choices=[SelectChoice(t) for t in EVENT_TYPES])


class FollowLinkForm(FlaskForm):
    """A follow-us link; its names per locale are added per request."""

    url = URLField(_l("URL"), validators=[DataRequired(), Length(max=2000)],
                   description=_l("An https:// address of the forum or the social page."))
    role = SelectField(_l("Shown to"), coerce=int, default=0)


def follow_link_form(locales: list[str], roles: list[SelectChoice], **kwargs) -> FollowLinkForm:
    class LocalisedFollowLinkForm(FollowLinkForm):
        pass

    for locale in locales:
        setattr(LocalisedFollowLinkForm, f"name_{locale}",
                StringField(_l("Name"), validators=[Optional(), Length(max=200)]))
    form = LocalisedFollowLinkForm(**kwargs)
    form.role.choices = roles
    return form
