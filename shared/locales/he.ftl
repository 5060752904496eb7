# SMS: the code early, then who it is for and how long it lives.
sms = { $code } הוא הקוד שלך ל-{ $app }. בתוקף { $minutes ->
        [one] לדקה אחת
        [two] לשתי דקות
       *[other] ל-{ $minutes } דקות
    }.
# Voice: said twice; $code is the digits with commas between.
voice = קוד האימות שלך ל-{ $app } הוא { $code }.
