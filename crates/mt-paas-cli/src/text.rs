//! The CLI's language: Korean when the locale asks for it (`MT_PAAS_LANG`, then `LC_ALL`,
//! `LC_MESSAGES`, `LANG`, the first one set: `ko…` is Korean), English otherwise.

/// The language of the CLI's help and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Ko,
    En,
}

impl Lang {
    /// The language the environment asks for.
    pub(crate) fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The language the variables ask for (`var` reads one).
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let asked = ["MT_PAAS_LANG", "LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .find_map(|name| var(name).filter(|v| !v.is_empty()));
        match asked {
            Some(v) if v.to_ascii_lowercase().starts_with("ko") => Self::Ko,
            _ => Self::En,
        }
    }

    /// `ko` in Korean, `en` in English.
    pub(crate) fn pick<'a>(self, ko: &'a str, en: &'a str) -> &'a str {
        match self {
            Self::Ko => ko,
            Self::En => en,
        }
    }
}

/// Korean help: (command path, argument id or "" for the command itself, text).
const HELP_KO: &[(&str, &str, &str)] = &[
    ("", "", "mt-paas: 설정과 테넌트 수명 주기를 다룹니다"),
    ("", "config", "설정 파일"),
    (
        "",
        "env",
        "덧씌울 환경 설정 (mt_paas_config.{env}.yaml); 기본값: $MT_PAAS_ENV",
    ),
    ("config", "", "설정 파일을 다룹니다"),
    (
        "config check",
        "",
        "설정을 검사하고 비밀값을 가린 채 출력합니다. 잘못되었으면 문제마다 한 줄씩 출력하고 1로 끝납니다.",
    ),
    (
        "config check",
        "quiet",
        "실제 적용되는 설정은 빼고 문제(또는 \"ok\")만 출력",
    ),
    (
        "tenant",
        "",
        "설정이 가리키는 중앙 DB의 테넌트를 관리합니다",
    ),
    (
        "tenant create",
        "",
        "테넌트를 프로비저닝합니다: 레지스트리, 데이터베이스(또는 스키마, Docker 스택), 마이그레이션, 시드. 중단된 작업은 다시 실행하면 이어집니다.",
    ),
    (
        "tenant create",
        "id",
        "테넌트 ID: a-z, 0-9, '_', '-' 중 1~63자",
    ),
    ("tenant create", "name", "표시 이름"),
    (
        "tenant create",
        "mode",
        "isolation.mode 대신 쓸 격리 모드: database, schema, docker",
    ),
    (
        "tenant destroy",
        "",
        "테넌트를 삭제합니다: 데이터를 provisioning.archive_dir에 보관한 뒤 지웁니다.",
    ),
    ("tenant destroy", "id", "테넌트 ID"),
    (
        "tenant destroy",
        "no_archive",
        "보관하지 않고 데이터를 바로 지움",
    ),
    (
        "tenant restore",
        "",
        "`destroy`가 만든 보관본에서 삭제된 테넌트를 되살립니다.",
    ),
    ("tenant restore", "id", "테넌트 ID"),
    ("tenant restore", "from", "보관본 (`.db` 또는 `.dump`)"),
    (
        "tenant restore",
        "unchecked",
        "보관본의 매니페스트가 없거나 다른 테넌트를 가리켜도 복원",
    ),
    (
        "tenant migrate",
        "",
        "테넌트를 최신 마이그레이션까지 올립니다. 이미 최신이면 건너뜁니다.",
    ),
    ("tenant migrate", "id", "테넌트 하나"),
    ("tenant migrate", "all", "활성 또는 정지된 모든 테넌트"),
    (
        "tenant migrate",
        "concurrency",
        "동시에 마이그레이션할 테넌트 수",
    ),
    ("tenant list", "", "테넌트 목록을 보여 줍니다"),
    ("tenant list", "json", "표 대신 JSON으로 출력"),
    ("tenant show", "", "테넌트 하나를 보여 줍니다"),
    ("tenant show", "id", "테넌트 ID"),
    ("tenant show", "json", "텍스트 대신 JSON으로 출력"),
    (
        "tenant render",
        "",
        "isolation.docker 설정으로 테넌트 스택을 출력합니다: Kubernetes 매니페스트(네임스페이스, 데이터베이스, 네트워크 정책, 쿼터, 시크릿) 또는 등록된 docker 테넌트의 compose 파일",
    ),
    ("tenant render", "id", "테넌트 ID"),
    ("tenant render", "target", "출력할 것"),
    (
        "token",
        "",
        "auth.jwt.secret으로 서명한 JWT를 발급합니다 (개발과 테스트용)",
    ),
    ("token", "tenant", "tenant_id 클레임"),
    ("token", "sub", "sub 클레임 (사용자 ID)"),
    (
        "outbox",
        "",
        "아웃박스를 점검하고 복구합니다 (감사 알림, 사용량, xAPI 문장)",
    ),
    ("outbox list", "", "상태별 개수와 최근 항목을 보여 줍니다"),
    ("outbox list", "status", "이 상태의 항목만"),
    ("outbox list", "limit", "항목 수"),
    ("outbox list", "json", "JSON으로 출력"),
    (
        "outbox retry",
        "",
        "실패로 격리된 항목을 다시 대기열에 넣습니다 (하나 또는 전부)",
    ),
    ("outbox retry", "id", "항목 ID"),
    ("outbox retry", "all", "격리된 항목 전부"),
    (
        "outbox purge",
        "",
        "일정 시간이 지난 전달 완료 또는 실패 항목을 지웁니다",
    ),
    ("outbox purge", "status", "어떤 항목"),
    ("outbox purge", "older_than", "이 초보다 오래된 항목만"),
    (
        "dev",
        "",
        "이 컴퓨터에서 전체 흐름을 실행합니다: 127.0.0.1:8505의 참조 마켓, 개발용 LRS, MT_PAAS_ENV=dev인 서비스 (Ctrl-C까지)",
    ),
    (
        "dev",
        "market_config",
        "마켓 설정 (파일이 없으면 내장 기본값)",
    ),
    (
        "dev",
        "service_url",
        "서비스 주소 (준비를 기다리고 curl 예시를 출력할 곳)",
    ),
    (
        "dev",
        "service",
        "서비스를 실행할 명령 (기본값: 이 저장소의 basic_service)",
    ),
];

/// The CLI's help in `lang`: Korean texts, headings and help/version flags for `ko`.
pub(crate) fn localize(command: clap::Command, lang: Lang) -> clap::Command {
    if lang == Lang::En {
        return command;
    }
    localize_at(command, "", true)
}

fn localize_at(mut command: clap::Command, path: &str, root: bool) -> clap::Command {
    for (at, arg, text) in HELP_KO {
        if *at != path {
            continue;
        }
        if arg.is_empty() {
            command = command.about(*text).long_about(None);
        } else {
            command = command.mut_arg(*arg, |a| a.help(*text).long_help(None));
        }
    }
    command = command
        .help_template("{about-with-newline}\n사용법: {usage}\n\n{all-args}{after-help}")
        .subcommand_help_heading("명령")
        .subcommand_value_name("명령")
        .next_help_heading("옵션")
        .mut_args(|a| {
            let heading = if a.is_positional() {
                "인수"
            } else {
                "옵션"
            };
            a.help_heading(heading)
        })
        .disable_help_flag(true)
        .disable_help_subcommand(true)
        .arg(
            clap::Arg::new("help")
                .short('h')
                .long("help")
                .action(clap::ArgAction::Help)
                .help("도움말 출력")
                .help_heading("옵션"),
        );
    if root {
        command = command.disable_version_flag(true).arg(
            clap::Arg::new("version")
                .short('V')
                .long("version")
                .action(clap::ArgAction::Version)
                .help("버전 출력")
                .help_heading("옵션"),
        );
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        command = command.mut_subcommand(&name, |sub| localize_at(sub, &sub_path, false));
    }
    command
}

#[cfg(test)]
mod tests {
    use super::Lang;

    fn lang(vars: &[(&str, &str)]) -> Lang {
        Lang::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_first_variable_set_decides() {
        assert_eq!(lang(&[]), Lang::En);
        assert_eq!(lang(&[("LANG", "ko_KR.UTF-8")]), Lang::Ko);
        assert_eq!(lang(&[("LANG", "C.UTF-8")]), Lang::En);
        assert_eq!(
            lang(&[("LC_ALL", "en_US.UTF-8"), ("LANG", "ko_KR.UTF-8")]),
            Lang::En
        );
        assert_eq!(lang(&[("LC_ALL", ""), ("LANG", "ko_KR.UTF-8")]), Lang::Ko);
        assert_eq!(
            lang(&[("MT_PAAS_LANG", "ko"), ("LC_ALL", "en_US.UTF-8")]),
            Lang::Ko
        );
        assert_eq!(
            lang(&[("MT_PAAS_LANG", "en"), ("LANG", "ko_KR.UTF-8")]),
            Lang::En
        );
    }
}
