"""Words the generated ATS data is made of: names, stages, reasons, sources."""

from __future__ import annotations

FIRST_NAMES = (
    "Aarav",
    "Abigail",
    "Adebayo",
    "Aiko",
    "Alejandro",
    "Amara",
    "Ananya",
    "Andrei",
    "Anna",
    "Arjun",
    "Beatriz",
    "Benjamin",
    "Carlos",
    "Chen",
    "Chloe",
    "Daniel",
    "Diego",
    "Elena",
    "Emeka",
    "Emma",
    "Fatima",
    "Felix",
    "Gabriel",
    "Hana",
    "Hiroshi",
    "Ibrahim",
    "Ines",
    "Isabella",
    "Jakub",
    "James",
    "Jin",
    "Julia",
    "Kavya",
    "Kenji",
    "Lars",
    "Layla",
    "Lucas",
    "Mai",
    "Maria",
    "Mateo",
    "Mei",
    "Mohammed",
    "Nadia",
    "Noah",
    "Olivia",
    "Omar",
    "Priya",
    "Rafael",
    "Rohan",
    "Sara",
    "Sofia",
    "Tariq",
    "Thomas",
    "Valentina",
    "Wei",
    "Yara",
    "Yusuf",
    "Zainab",
    "Zoe",
    "Zhang",
)
LAST_NAMES = (
    "Adeyemi",
    "Ahmed",
    "Andersen",
    "Bianchi",
    "Brown",
    "Chen",
    "Costa",
    "Dubois",
    "Fernandez",
    "Fischer",
    "Garcia",
    "Gupta",
    "Haddad",
    "Hansen",
    "Ito",
    "Jensen",
    "Kim",
    "Kowalski",
    "Kumar",
    "Lee",
    "Lopez",
    "Martin",
    "Mensah",
    "Moreau",
    "Muller",
    "Nakamura",
    "Nguyen",
    "Novak",
    "Okafor",
    "Olsen",
    "Patel",
    "Petrov",
    "Popescu",
    "Rossi",
    "Santos",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Suzuki",
    "Tanaka",
    "Torres",
    "Van Dijk",
    "Wang",
    "Williams",
    "Wilson",
    "Yamamoto",
    "Zhou",
)


def slug(name: str) -> str:
    """A name as it appears in an e-mail address or a URL."""
    return name.lower().replace(" ", "")


FIRST_SLUGS = tuple(slug(n) for n in FIRST_NAMES)
LAST_SLUGS = tuple(slug(n) for n in LAST_NAMES)
EMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com", "fastmail.com")
LOCATIONS = (
    ("San Francisco", "CA", "US", "94107"),
    ("New York", "NY", "US", "10001"),
    ("Austin", "TX", "US", "78701"),
    ("Toronto", "ON", "CA", "M5V 2T6"),
    ("London", None, "GB", "EC1A 1BB"),
    ("Berlin", None, "DE", "10115"),
    ("Bengaluru", "KA", "IN", "560001"),
    ("Lisbon", None, "PT", "1100-148"),
    ("Remote", None, None, None),
    ("Singapore", None, "SG", "018956"),
)
ORIGINS = ("EXTERNAL", "EXTERNAL", "EXTERNAL", "REFERRAL", "AGENCY", "NOT_SPECIFIED")
PHONE_TYPES = ("WORK", "PERSONAL", "SKYPE", "NOT_SPECIFIED")  # Knit's enums
EMAIL_TYPES = ("PERSONAL", "WORK", "NOT_SPECIFIED")
LINK_HOSTS = ("https://www.linkedin.com/in/", "https://github.com/", "https://")

# Pipelines a job may use; the first stage is where every application starts, the last is the hire.
PIPELINES = (
    ("Application Review", "Recruiter Screen", "Technical Interview", "Onsite", "Offer", "Hired"),
    (
        "New Lead",
        "Phone Screen",
        "Hiring Manager Interview",
        "Take-home Assignment",
        "Final Interview",
        "Reference Check",
        "Offer",
        "Hired",
    ),
    ("Applied", "Screening", "Interview", "Offer", "Hired"),
    ("Application Review", "Phone Interview", "Panel Interview", "Background Check", "Offer", "Hired"),
)
INTERVIEW_SUBJECTS = (
    "Intro call",
    "Technical interview",
    "System design",
    "Culture add conversation",
    "Hiring manager chat",
    "Pair programming",
    "Case study review",
    "Final round",
)
INTERVIEW_DURATIONS_MIN = (30, 45, 60, 60, 90)
REJECTION_REASONS = (
    "Not enough experience",
    "Position filled",
    "Compensation mismatch",
    "Candidate withdrew",
    "Failed technical interview",
    "Not a culture fit",
    "Location requirements",
    "Other",
)
JOB_TITLES = (
    "Backend Engineer",
    "Frontend Engineer",
    "Data Engineer",
    "Product Manager",
    "Account Executive",
    "Customer Success Manager",
    "Recruiter",
    "Product Designer",
    "Site Reliability Engineer",
    "Data Analyst",
    "Marketing Manager",
    "Finance Associate",
)
CAMPAIGNS = ("spring-hiring", "university-fair", "referral-drive", "careers-page")  # a customFields value
ATTACHMENT_KINDS = (("RESUME", "resume", "pdf"), ("COVER_LETTER", "cover_letter", "pdf"), ("OTHER", "portfolio", "zip"))
# Departments of the simulated company; a job's title decides its department (TITLE_DEPARTMENTS,
# parallel to JOB_TITLES), so many jobs share one and reports can group by it.
DEPARTMENTS = ("Engineering", "Product", "Design", "Sales", "Customer Success", "Marketing", "Finance", "People")
TITLE_DEPARTMENTS = (0, 0, 0, 1, 3, 4, 7, 2, 0, 1, 5, 6)
# Words a job edit adds to or removes from a title.
TITLE_PREFIXES = ("Senior ", "Staff ", "Lead ")
# How an ATS spells a job's status before Knit maps it (the job_rawValues guess), by Knit's status.
RAW_JOB_STATUSES = {"OPEN": "open", "CLOSED": "closed", "DRAFT": "draft", "NOT_SPECIFIED": "on_hold"}
JOB_BOARDS = ("Company careers page", "LinkedIn", "Indeed")  # where a job is posted (job_posts)
