package sample

import (
	"net/mail"
	"time"
)

// note is a plain text message. who indexes profile.people: the sender of
// received mail, the recipient of sent mail and drafts.
type note struct {
	who           int
	subject, body string
}

// section is one headed paragraph of a newsletter-style message.
type section struct {
	title, text string
}

// bulletin is a newsletter-style message sent as multipart/alternative.
type bulletin struct {
	who               int
	subject, headline string
	sections          []section
	footer            string
}

// invoice is a message with a small PDF attached.
type invoice struct {
	who                     int
	subject, body, filename string
	title                   string
	lines                   []string
}

// thread is a three-message conversation: people[0] opens it, the owner
// replies (in Sent), and people[1] follows up on the reply.
type thread struct {
	subject                  string
	opening, reply, followup string
}

// profile is the content of one demo account. Subjects, bodies and PDF
// lines may use the placeholders {me} (the owner's first name), {org} and
// {p0}…{p9} (first names of people).
type profile struct {
	owner  mail.Address
	org    string
	zone   *time.Location
	people []mail.Address
	// local lists the people who are the owner's colleagues or family, so
	// that a derived profile can rename them.
	local []int

	thread      thread
	news, promo bulletin
	bill        invoice
	intl        note // non-ASCII subject and body
	inbox       [5]note
	sent        [2]note
	draft       note
	trash       [2]note
	archive     [2]note
	project     [2]note
}

// workProfile is the "work" account: a software company.
var workProfile = profile{
	owner: mail.Address{Name: "Sam Porter", Address: "sam.porter@northwind-labs.example"},
	org:   "Northwind Labs",
	zone:  time.FixedZone("EST", -5*3600),
	people: []mail.Address{
		{Name: "Priya Raman", Address: "priya.raman@northwind-labs.example"},
		{Name: "Marcus Lee", Address: "marcus.lee@northwind-labs.example"},
		{Name: "Jürgen Müller", Address: "juergen.mueller@kunde-gmbh.example"},
		{Name: "Helen Ortiz", Address: "helen.ortiz@northwind-labs.example"},
		{Name: "Tom Becker", Address: "tom.becker@acme-supply.example"},
		{Name: "IT Service Desk", Address: "servicedesk@northwind-labs.example"},
		{Name: "Northwind Weekly", Address: "newsletter@northwind-labs.example"},
		{Name: "CloudMeter", Address: "reports@cloudmeter.example"},
	},
	local: []int{0, 1, 3},
	thread: thread{
		subject: "Apollo launch checklist",
		opening: `Hi {me},

I've put the launch checklist for Apollo in the shared drive. Could you
review the infrastructure section before Thursday's go/no-go meeting?

The open items I'm least sure about:

  - DNS cutover timing (we said 06:00 UTC, ops prefers 08:00)
  - rollback plan for the mail proxy
  - who is on call the first weekend

Thanks,
{p0}`,
		reply: `Hi {p0},

Went through it this morning. Comments:

  - 08:00 UTC for the DNS cutover is fine by me; TTLs are already at 300s.
  - Rollback: we keep the old proxy pool warm for 48 hours and flip the
    load balancer back if the error rate goes above 1%.
  - I can take the first weekend on call. {p1}, can you cover the second?

{me}`,
		followup: `Second weekend works for me. I've added both of us to the rota and
updated the checklist with the rollback thresholds.

One more thing: the staging certificates expire at the end of the month,
so let's renew them before the launch rather than after.

{p1}`,
	},
	news: bulletin{
		who:      6,
		subject:  "Northwind Weekly: all-hands recap, new badge readers, hackathon",
		headline: "Northwind Weekly",
		sections: []section{
			{"All-hands recap", "The slides and the recording of Tuesday's all-hands are on the intranet. Thanks to everyone who sent questions in advance."},
			{"New badge readers", "Facilities is replacing the badge readers on floors 3 and 4 next week. Please keep your old badge until your new one arrives."},
			{"Hackathon sign-ups are open", "Teams of up to four people; this quarter's theme is \"less toil\". Sign up at the front desk or on the wiki."},
		},
		footer: "You receive this because you are on all-staff at {org}.",
	},
	promo: bulletin{
		who:      7,
		subject:  "Your CloudMeter usage report for last month",
		headline: "Monthly usage report",
		sections: []section{
			{"Compute", "1,284 vCPU-hours, up 6% on the previous month."},
			{"Storage", "2.1 TB stored on average, up 0.3 TB."},
			{"Network egress", "412 GB, within your committed volume."},
		},
		footer: "Change how often you get these reports in your CloudMeter notification settings.",
	},
	bill: invoice{
		who:     4,
		subject: "Invoice INV-20417 for rack hardware",
		body: `Hello {me},

Please find attached invoice INV-20417 for the rack hardware delivered
last week (two 42U racks, cable management and switched PDUs).

Payment terms are net 30. Let me know if the PO number needs changing.

Best regards,
Tom Becker
Acme Supply Co.`,
		filename: "INV-20417.pdf",
		title:    "Invoice INV-20417",
		lines: []string{
			"Acme Supply Co.",
			"Bill to: {org}, attn. {me}",
			"",
			"2 x 42U server rack ........................ 2,380.00",
			"1 x Cable management kit ...................   145.00",
			"4 x Switched PDU, 16A ...................... 1,196.00",
			"",
			"Total due (USD) ............................ 3,721.00",
			"Terms: net 30",
		},
	},
	intl: note{
		who:     2,
		subject: "Rückfragen zum Angebot – Lieferung im Oktober",
		body: `Hallo {me},

vielen Dank für das Angebot. Zwei kurze Rückfragen:

1. Können Sie die Lieferung auf Anfang Oktober verschieben?
2. Ist der Preis von 12.400 € inklusive Schulung vor Ort?

Viele Grüße aus München
Jürgen Müller
Kunde GmbH`,
	},
	inbox: [5]note{
		{5, "Scheduled maintenance: VPN gateway, Saturday 02:00-04:00 UTC", `Hello,

The VPN gateway will be unavailable on Saturday between 02:00 and 04:00
UTC while we upgrade its firmware. Webmail and the office network are not
affected.

If you need access during the window, contact the on-call engineer.

IT Service Desk`},
		{3, "Reminder: expense reports due Friday", `Hi all,

A friendly reminder that expense reports for this month are due by
Friday at 17:00. Receipts over $25 need to be attached.

Thanks,
{p3}`},
		{0, "Lunch & learn on Wednesday: tracing with OpenTelemetry", `Hi team,

This Wednesday at 12:30 in the big meeting room I'll walk through how we
added tracing to the billing service, and what it found. Pizza provided.

{p0}`},
		{1, "CI is green again", `Hi {me},

The flaky integration test was a port clash between two test servers.
Both now listen on port 0 and the pipeline has been green for ten runs.

{p1}`},
		{3, "Parking garage closed Monday", `Hi everyone,

The parking garage will be closed all day Monday for resurfacing. The
lot on Elm Street has reserved spaces for us; show your badge at the gate.

{p3}`},
	},
	sent: [2]note{
		{1, "Notes from today's standup", `Hi {p1},

Quick notes for you since you missed standup:

  - staging deploy moved to Thursday
  - {p0} is chasing the certificate renewal
  - I'm reviewing the proxy connection limits this afternoon

{me}`},
		{3, "Conference travel approval", `Hi {p3},

Could you approve travel for the infrastructure conference in October?
Flights and hotel come to about $1,450; the ticket is covered by the
speaker pass.

Thanks,
{me}`},
	},
	draft: note{3, "Time off request: 14-18 October", `Hi {p3},

I'd like to take 14-18 October off. {p1} has agreed to cover my on-call
shifts that week.

`},
	trash: [2]note{
		{5, "Your password expires in 5 days", `Hello,

Your directory password expires in 5 days. Change it from the account
portal; the new password must not match your last five.

IT Service Desk`},
		{3, "Free pizza in the 3rd floor kitchen", `Leftovers from the client workshop, help yourselves!

{p3}`},
	},
	archive: [2]note{
		{3, "Welcome to {org}!", `Hi {me},

Welcome aboard! Your laptop is ready for pickup at the IT desk, and your
first week's schedule is in your calendar.

See you Monday,
{p3}`},
		{0, "Offsite logistics: bus leaves at 8:15", `Hi all,

The bus to the offsite leaves from the main entrance at 8:15 sharp.
Bring a jacket; the afternoon session is outdoors.

{p0}`},
	},
	project: [2]note{
		{0, "Apollo: staging environment is ready", `Hi {me},

Staging for Apollo is up. The proxy listens on the usual port, backed by
two mail servers, and the dashboards are linked from the project page.

{p0}`},
		{1, "Apollo risk register v2", `Hi {me},

I've updated the risk register. New entries: certificate expiry during
the launch week, and the upstream rate limits we hit in load tests.

{p1}`},
	},
}

// homeProfile is the "home" account: family, friends and household mail.
var homeProfile = profile{
	owner: mail.Address{Name: "Jamie Rivera", Address: "jamie@rivera-family.example"},
	org:   "the Rivera family",
	zone:  time.FixedZone("CET", 1*3600),
	people: []mail.Address{
		{Name: "Chris Rivera", Address: "chris@rivera-family.example"},
		{Name: "Alex Kim", Address: "alex.kim@mailbox.example"},
		{Name: "Renée Dubois", Address: "renee.dubois@courriel.example"},
		{Name: "Bright Smile Dental", Address: "appointments@brightsmile-dental.example"},
		{Name: "City Power & Light", Address: "billing@citypower.example"},
		{Name: "Maple Street Book Club", Address: "bookclub@lists.maplestreet.example"},
		{Name: "The Green Thumb", Address: "hello@greenthumb.example"},
		{Name: "Trailhead Outfitters", Address: "deals@trailhead-outfitters.example"},
		{Name: "ParcelPoint", Address: "no-reply@parcelpoint.example"},
	},
	local: []int{0},
	thread: thread{
		subject: "Weekend at the lake?",
		opening: `Hey {me},

The cabin is free the weekend after next. Want to go up Friday evening
and come back Sunday? I can drive if you bring the kayaks.

{p0}`,
		reply: `Count me in! The kayaks are fine, I'll check the roof rack this weekend.

{p1} mentioned wanting to come too. {p1}, are you free?

{me}`,
		followup: `I'm in! I'll bring the camp stove and everything for s'mores.
Should we do the grocery run together on Friday afternoon?

{p1}`,
	},
	news: bulletin{
		who:      6,
		subject:  "The Green Thumb: what to plant this spring",
		headline: "Spring planting guide",
		sections: []section{
			{"Tomatoes", "Start seeds indoors six weeks before the last frost, then harden them off for a week before planting out."},
			{"Herbs on the windowsill", "Basil, parsley and chives are happy in a sunny window. Pinch off flowers to keep the leaves coming."},
			{"Workshop: composting basics", "Join us on Saturday morning at the community garden. Free for subscribers."},
		},
		footer: "You subscribed to The Green Thumb newsletter. Unsubscribe at any time.",
	},
	promo: bulletin{
		who:      7,
		subject:  "Spring sale: 30% off tents and sleeping bags",
		headline: "The spring sale is on",
		sections: []section{
			{"Tents", "All two- and four-person tents are 30% off until Sunday."},
			{"Sleeping bags", "Three-season bags from $59, down bags 25% off."},
			{"Free shipping", "On orders over $75, or pick up in store."},
		},
		footer: "You get this email because you joined the Trailhead Outfitters rewards program.",
	},
	bill: invoice{
		who:     4,
		subject: "Your electricity statement is ready",
		body: `Dear customer,

Your statement for account 4471-0092 is attached.

Amount due: $84.17, payable within 14 days. If you are enrolled in
automatic payments, no action is needed.

City Power & Light customer service`,
		filename: "statement.pdf",
		title:    "City Power & Light - statement",
		lines: []string{
			"Account 4471-0092",
			"",
			"Previous balance ............ $91.02",
			"Payment received ........... -$91.02",
			"Energy used: 412 kWh ........ $71.40",
			"Delivery charge ............. $12.77",
			"",
			"Amount due .................. $84.17",
		},
	},
	intl: note{
		who:     2,
		subject: "Vacances d'été à Annecy ☀ – réservation confirmée",
		body: `Coucou {me} !

Bonne nouvelle : la réservation à Annecy est confirmée pour la
deuxième semaine d'août. Le gîte est à deux pas du lac, avec vélos
et barbecue. 🚲

On partage les frais ? Ça fait 640 € pour la semaine, donc 320 € chacun.

Bises,
Renée`,
	},
	inbox: [5]note{
		{8, "Your package has been delivered", `Hello,

Your package was delivered today at 14:12 and left at the front door.

Tracking number: PP 8842 1190 3375

ParcelPoint`},
		{3, "Appointment reminder: cleaning on Tuesday at 9:30", `Hello {me},

This is a reminder of your dental cleaning on Tuesday at 9:30.
Please reply to this email if you need to reschedule.

Bright Smile Dental`},
		{5, "This month's pick: The Left Hand of Darkness", `Hi readers,

This month we're reading The Left Hand of Darkness. We meet on the last
Thursday of the month at 19:00 at the library, room B.

Happy reading!`},
		{1, "Photos from Saturday", `Hi {me},

I finally sorted the photos from Saturday's barbecue. The album link is
in the family chat; the one of the dog and the frisbee is my favourite.

{p1}`},
		{0, "Can you pick up the kids on Thursday?", `Hi {me},

I have a late meeting on Thursday. Could you pick up the kids from
football practice at 17:30?

Thanks!
{p0}`},
	},
	sent: [2]note{
		{1, "Recipe for the lemon cake", `Hi {p1},

Here's the lemon cake recipe you asked for:

  200 g butter, 200 g sugar, 4 eggs, 200 g flour,
  2 tsp baking powder, zest and juice of 2 lemons.

Bake at 180 C for about 40 minutes.

{me}`},
		{2, "Our photos from Annecy last year", `Hi {p2},

I found our photos from Annecy last year, attaching the link to the
album. Can't wait to go back!

{me}`},
	},
	draft: note{0, "Birthday party plans for Mia", `Hi {p0},

Ideas for Mia's party so far:

  - Saturday afternoon in the garden
  - pizza and the lemon cake
  - ask Alex to bring the badminton set

`},
	trash: [2]note{
		{7, "Last chance: free shipping ends tonight", `Free shipping on all orders ends at midnight.

Trailhead Outfitters`},
		{8, "Your parcel is on its way", `Hello,

Your parcel has left our depot and will arrive tomorrow between 10:00
and 14:00.

ParcelPoint`},
	},
	archive: [2]note{
		{4, "Welcome to paperless billing", `Dear customer,

You have switched to paperless billing. Your statements will arrive by
email from now on.

City Power & Light`},
		{0, "Insurance documents for the car", `Hi {me},

The new insurance documents for the car arrived. I scanned them and put
the originals in the blue folder in the study.

{p0}`},
	},
	project: [2]note{
		{1, "Apollo rocket: parts list", `Hi {me},

Here's what we need for the science fair rocket:

  - 3 x B6-4 engines and igniters
  - balsa sheet for the fins
  - 24 mm body tube, nose cone, parachute kit

The hobby shop has everything except the parachute.

{p1}`},
		{0, "Apollo: launch day at the school field", `Hi {me},

The school confirmed we can launch on the sports field on Saturday at
10:00 if the wind is below 15 km/h. I signed the permission slip.

{p0}`},
	},
}

// firstNames and lastNames name the people of derived profiles.
var (
	firstNames = []string{
		"Avery", "Blake", "Carmen", "Dmitri", "Elena", "Farah", "Gabriel",
		"Hana", "Ivan", "Julia", "Kofi", "Lena", "Mateo", "Nadia", "Oscar",
		"Paula", "Quinn", "Rosa", "Stefan", "Tara", "Umar", "Vera",
		"Wes", "Yara", "Zane",
	}
	lastNames = []string{
		"Adler", "Brooks", "Castillo", "Dunn", "Eriksen", "Fischer", "Garcia",
		"Hughes", "Ito", "Jensen", "Kowalski", "Lindqvist", "Moreau",
		"Novak", "Okafor", "Petrov", "Quist", "Rossi", "Sato", "Tanaka",
		"Uddin", "Varga", "Walsh", "Young", "Zimmer",
	}
)
